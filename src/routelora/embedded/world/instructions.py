"""The world's instruction families: every question type is asked in many phrasings, some kept for testing only.

Real instruction data is rarely one template per task, and a router or a base that has only seen one wording fails
on the next. Each family lists the phrasings that train, test and corpus samples draw from, and a disjoint set of
held-out phrasings that only the ``test_reworded`` split uses. Held-out phrasings are new sentences, but every word
in them occurs somewhere in the training phrasings (a test checks it): a model that never read a word cannot know
its meaning, so they test rewording, not vocabulary. Placeholders (``{hypothesis}``, ``{text}``...) are filled by
the task's generator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_TRAIN, MIN_HELD_OUT = 8, 4


@dataclass(frozen=True)
class Phrasings:
    """One instruction family: the phrasings seen in training, and the held-out ones."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.train) < MIN_TRAIN or len(self.held_out) < MIN_HELD_OUT:
            raise ValueError(f"a family needs >= {MIN_TRAIN} training and >= {MIN_HELD_OUT} held-out phrasings")
        if set(self.train) & set(self.held_out):
            raise ValueError(f"phrasings both trained and held out: {sorted(set(self.train) & set(self.held_out))}")
        fields = {frozenset(re.findall(r"{(\w+)}", p)) for p in self.train + self.held_out}
        if len(fields) != 1:
            raise ValueError(
                f"phrasings of one family must share their placeholders, got {sorted(map(sorted, fields))}"
            )


def _family(train: str, held_out: str) -> Phrasings:
    """A family from two blocks of one phrasing per line."""
    lines = lambda block: tuple(line.strip() for line in block.strip().splitlines())  # noqa: E731
    return Phrasings(lines(train), lines(held_out))


FAMILIES: dict[str, Phrasings] = {
    "caption": _family(
        """
        Write a short caption for the image.
        Describe the image in a few words.
        Give a short description of the picture.
        Caption this image.
        What does the image show? Answer with a caption.
        Write a caption for this picture.
        Briefly describe what you see.
        Provide a one-line caption of the image.
        Tell me what the image shows in a caption.
        Produce a caption for the picture.
        Summarise the image in a caption.
        Write a phrase describing the image.
        What caption would describe the picture best?
        Give a brief caption of the image.
        """,
        """
        Summarise the picture in a short phrase.
        How would you caption this picture?
        Tell me briefly what is in the image.
        Produce a brief caption describing the image.
        """,
    ),
    "entailment": _family(
        """
        Hypothesis: "{hypothesis}". Does the image entail it? Answer entailment, neutral or contradiction.
        Does the picture entail, contradict or leave open "{hypothesis}"? Answer entailment, neutral or contradiction.
        Image hypothesis: "{hypothesis}". Answer entailment, neutral or contradiction.
        Given the image, is "{hypothesis}" an entailment, neutral or a contradiction?
        Claim: "{hypothesis}". Is the claim entailed by the image? Reply entailment, neutral or contradiction.
        Read the hypothesis "{hypothesis}" and compare it with the image. Answer entailment, neutral or contradiction.
        Hypothesis about the image: "{hypothesis}". Entailment, neutral or contradiction?
        Decide whether the image entails "{hypothesis}": entailment, neutral or contradiction.
        Statement about the image: "{hypothesis}". Answer entailment, neutral or contradiction.
        Look at the picture and judge "{hypothesis}" against it. Answer entailment, neutral or contradiction.
        Based on the image, does it support "{hypothesis}"? Answer entailment, neutral or contradiction.
        """,
        """
        Statement: "{hypothesis}". Based on the picture, answer entailment, neutral or contradiction.
        Look at the image. Is "{hypothesis}" entailment, neutral or contradiction?
        Judge the hypothesis "{hypothesis}" against the picture: entailment, neutral or contradiction.
        Does the image support "{hypothesis}"? Say entailment, neutral or contradiction.
        """,
    ),
    "meme": _family(
        """
        Meme text: "{text}". Is this meme hateful? Answer yes or no.
        The meme says "{text}". Is it hateful? Answer yes or no.
        Caption on the meme: "{text}". Hateful or not? Answer yes or no.
        Is this meme with the text "{text}" hateful? Answer yes or no.
        Meme: "{text}". Does this meme attack what the image shows? Answer yes or no.
        Text of the meme: "{text}". Answer yes if it is hateful, otherwise no.
        Here is a meme reading "{text}". Hateful? Answer yes or no.
        Meme text "{text}": is the meme hateful? Reply yes or no.
        Consider this meme: "{text}". Hateful? Answer yes or no.
        The meme reads "{text}". Would it be hateful? Answer yes or no.
        Do you see the meme "{text}" as hateful? Answer yes or no.
        Would you call this meme hateful? Its text: "{text}". Answer yes or no.
        """,
        """
        Consider the meme "{text}". Is it hateful? Say yes or no.
        This meme reads "{text}". Would you call it hateful? Answer yes or no.
        Does the meme "{text}" count as hateful? Yes or no.
        Meme words: "{text}". Hateful meme? Answer yes or no.
        """,
    ),
    "genre": _family(
        """
        Plot: "{plot}". Which genres fit this movie poster and plot?
        Movie plot: "{plot}". Which genres does this movie have?
        Given the poster and the plot "{plot}", list the genres.
        Plot summary: "{plot}". Name the genres of this movie.
        What genres fit the poster and this plot: "{plot}"?
        Story: "{plot}". Which genres apply to this movie?
        Poster and plot "{plot}": list every genre that fits.
        Which genres match this movie? Plot: "{plot}".
        Film plot: "{plot}". Which genres fit?
        Synopsis of the movie: "{plot}". List its genres.
        """,
        """
        Here is a poster with the plot "{plot}". What genres is the movie?
        Plot of the film: "{plot}". Give its genres.
        Name every genre of the movie with plot "{plot}" and this poster.
        Synopsis: "{plot}". Which genres?
        """,
    ),
    "mcq_count": _family(
        """
        How many shapes are there?
        How many shapes are in the picture?
        Count the shapes.
        What is the number of shapes?
        How many shapes can you see?
        Count the shapes in the image.
        How many shapes does the image show?
        What number of shapes is shown?
        Tell me the number of shapes in the picture.
        The picture contains how many shapes?
        Which number of shapes appears in the image?
        """,
        """
        Tell me how many shapes the picture contains.
        What is the count of shapes in this image?
        How many shapes appear here?
        Count how many shapes are shown.
        """,
    ),
    "mcq_shape": _family(
        """
        Which shape is in the picture?
        What kind of shape is shown?
        Which shape do you see?
        What shape is in the image?
        Name the shape in the picture.
        Which kind of shape is shown?
        What shape does the image show?
        Which shape appears in the image?
        Tell me the kind of shape in the picture.
        Identify which shape is shown.
        What type of shape is in the image?
        The picture contains which shape?
        """,
        """
        Identify the kind of shape in this picture.
        What type of shape is drawn?
        Tell me which shape the image contains.
        Which shape is drawn here?
        """,
    ),
    "mcq_colour": _family(
        """
        What colour are the shapes?
        Which colour do the shapes have?
        What is the colour of the shapes?
        Name the colour of the shapes.
        Which colour are the shapes in the image?
        What colour is shown?
        In which colour are the shapes drawn?
        What colour do you see?
        Tell me which colour the shapes have.
        Identify the colour shown.
        """,
        """
        Tell me the colour of the shapes.
        Which colour appears in the picture?
        The shapes are in which colour?
        Identify the colour of the shapes.
        """,
    ),
    "mcq_row": _family(
        """
        Which row is the shape in?
        In which row is the shape?
        What row is the shape in?
        Which row of the picture holds the shape?
        Name the row of the shape.
        Where is the shape: which row?
        In what row does the shape sit?
        Which row is the shape placed in?
        Tell me which row holds the shape.
        Identify the row of the shape.
        Which row of the image contains the shape?
        """,
        """
        Tell me the row of the shape.
        The shape is in which row?
        Identify the row that holds the shape.
        Which row contains the shape?
        """,
    ),
    "mcq_answer": _family(
        """
        Answer with the letter.
        Reply with the letter of the option.
        Give the letter.
        Answer with the option's letter.
        Choose a letter.
        Pick one letter.
        Answer with one letter.
        Respond with the letter.
        Select one letter.
        Your reply should be one letter.
        Answer only with the letter.
        Give the letter of the right choice.
        """,
        """
        Say only the letter.
        Your answer should be a letter.
        Select the right letter.
        Write the letter of your choice.
        """,
    ),
    "chart_highest": _family(
        """
        What is the highest value?
        Which value is the highest?
        What is the largest value in the chart?
        How high is the tallest bar?
        What is the value of the tallest bar?
        What is the maximum value?
        Read the highest value off the chart.
        What is the biggest value shown?
        Tell me the largest value.
        Identify the highest value in the chart.
        What is the highest value of the bars?
        Among the bars, which value is the largest?
        Tell me the value of the tallest of the bars.
        Give the value of the tallest bar.
        """,
        """
        Tell me the highest value in this chart.
        Which is the largest value of the bars?
        How tall is the highest bar?
        Give the maximum value of the chart.
        """,
    ),
    "chart_lowest": _family(
        """
        What is the lowest value?
        Which value is the lowest?
        What is the smallest value in the chart?
        How high is the shortest bar?
        What is the value of the shortest bar?
        What is the minimum value?
        Read the lowest value off the chart.
        What is the least value shown?
        Tell me the smallest value.
        Identify the lowest value in the chart.
        What is the lowest value of the bars?
        Among the bars, which value is the smallest?
        Tell me the value of the shortest of the bars.
        Give the value of the shortest bar.
        """,
        """
        Tell me the lowest value in this chart.
        Which is the smallest value of the bars?
        How tall is the lowest bar?
        Give the minimum value of the chart.
        """,
    ),
    "chart_range": _family(
        """
        What is the difference between the highest and the lowest value?
        How much higher is the tallest bar than the shortest?
        What is the highest value minus the lowest value?
        By how much do the highest and lowest values differ?
        What is the gap between the largest and the smallest value?
        Subtract the lowest value from the highest value.
        What is the range of the values?
        How far apart are the highest and the lowest value?
        Tell me how much the highest and the lowest value differ.
        How big is the difference between the highest and the lowest value?
        When you subtract the lowest value from the highest, what is left?
        What number do you get from the highest value minus the lowest?
        What is the difference between the values of the tallest and the shortest bars?
        Give the difference of the highest and the lowest value.
        """,
        """
        Tell me the difference between the largest and the smallest value.
        Give the highest value minus the lowest.
        How big is the gap between the tallest and the shortest bar?
        What do you get when you subtract the smallest value from the largest?
        """,
    ),
    "chart_count": _family(
        """
        How many bars are there?
        Count the bars.
        How many bars does the chart have?
        What is the number of bars?
        How many bars are in the chart?
        Count the bars in the chart.
        How many bars can you see?
        What number of bars is shown?
        Tell me the number of bars.
        The chart contains how many bars?
        How many bars appear in the chart?
        How many values does the chart show?
        Give the number of bars.
        """,
        """
        Tell me how many bars the chart contains.
        What is the count of bars?
        How many bars appear here?
        Count how many bars are drawn.
        """,
    ),
    "doc_full": _family(
        """
        What is written?
        What does the page say?
        Read the text.
        What is written on the page?
        Read the code on the page.
        What text is shown?
        Transcribe the page.
        What code is written?
        Tell me the code on the page.
        Identify the text of the page.
        Read out the code.
        """,
        """
        Tell me what the page says.
        Which code is written on this page?
        Read out the text of the page.
        What is the text on the page?
        """,
    ),
    "doc_first": _family(
        """
        What is the first letter?
        Which letter comes first?
        Read the first letter.
        What is the first letter of the code?
        Which letter is first?
        Name the first letter.
        What letter does the code start with?
        What is the first letter on the page?
        Tell me which letter comes first.
        Which letter begins the text?
        Which letter starts the text?
        """,
        """
        Tell me the first letter.
        Tell me which letter starts the code.
        Give the first letter of the text.
        What letter begins the code?
        """,
    ),
    "doc_second": _family(
        """
        What is the second letter?
        Which letter comes second?
        Read the second letter.
        What is the second letter of the code?
        Which letter is in the middle?
        Name the second letter.
        What letter is in the middle of the code?
        What is the second letter on the page?
        Tell me which letter comes second.
        What letter sits in the middle of the code?
        """,
        """
        Tell me the second letter.
        Which letter sits in the middle?
        Give the second letter of the text.
        Tell me which letter is second.
        """,
    ),
    "doc_last": _family(
        """
        What is the last letter?
        Which letter comes last?
        Read the last letter.
        What is the last letter of the code?
        Which letter is last?
        Name the last letter.
        What letter does the code end with?
        What is the last letter on the page?
        Tell me which letter comes last.
        Which letter ends the text?
        """,
        """
        Tell me the last letter.
        Tell me which letter ends the code.
        Give the last letter of the text.
        What letter ends the code?
        """,
    ),
    "basics_colour": _family(
        """
        What colour is the shape?
        Which colour is the shape?
        Name the colour of the shape.
        What is the colour of the shape?
        What colour is this shape?
        Which colour does the shape have?
        Say the colour of the shape.
        What colour is the shape in the picture?
        Tell me which colour the shape is.
        Identify the colour of the shape.
        What is the shape's colour?
        The shape has a colour: which one?
        """,
        """
        Tell me the colour of this shape.
        The shape has which colour?
        Identify the shape's colour.
        What colour has the shape?
        """,
    ),
    "basics_shape": _family(
        """
        What shape is this?
        Which shape is this?
        Name the shape.
        What kind of shape is this?
        What is this shape?
        Which kind of shape do you see?
        Say which shape this is.
        What shape is drawn?
        Tell me which shape you see.
        Identify which shape is drawn.
        What type of shape do you see?
        """,
        """
        Tell me what shape this is.
        Identify the shape.
        This is which shape?
        What type of shape is it?
        """,
    ),
    "basics_row": _family(
        """
        In which row is the shape?
        Which row is the shape in?
        Name the row of the shape.
        What row is the shape in?
        Which row holds the shape?
        Say the row of the shape.
        In what row is the shape?
        Which row of the image is the shape in?
        Tell me which row the shape sits in.
        Identify which row the shape is in.
        """,
        """
        Tell me which row the shape is in.
        The shape sits in which row?
        Identify the row of this shape.
        Which row has the shape?
        """,
    ),
    "basics_what_at": _family(
        """
        What is at the {position}?
        Which shape is at the {position}?
        Name the shape at the {position}.
        What shape is at the {position}?
        What do you see at the {position}?
        What is drawn at the {position}?
        Say what is at the {position}.
        What is in the cell at the {position}?
        Tell me which shape is at the {position}.
        Identify what is at the {position}.
        """,
        """
        Tell me what is at the {position}.
        Identify the shape at the {position}.
        At the {position}, what is there?
        Which shape sits at the {position}?
        """,
    ),
    "basics_count": _family(
        """
        How many shapes are there?
        Count the shapes.
        How many shapes do you see?
        What is the number of shapes?
        How many shapes are in the image?
        Count the shapes in the picture.
        How many shapes are shown?
        Say how many shapes there are.
        Tell me how many shapes you see.
        How many shapes appear in the picture?
        """,
        """
        Tell me the number of shapes.
        What is the count of shapes here?
        How many shapes appear?
        Count how many shapes there are.
        """,
    ),
    "basics_letter": _family(
        """
        Which letter is {column}?
        What letter is {column}?
        Name the letter {column}.
        Read the letter {column}.
        What is the letter {column}?
        Which letter is written {column}?
        Say the letter {column}.
        What letter do you see {column}?
        Tell me what letter you see {column}.
        Identify which letter is {column}.
        """,
        """
        Tell me the letter {column}.
        Identify the letter {column}.
        The letter {column} is which?
        Which letter appears {column}?
        """,
    ),
    "basics_bar_value": _family(
        """
        How tall is the bar?
        What is the value of the bar?
        How high is the bar?
        Read the value of the bar.
        What value does the bar show?
        What is the height of the bar?
        Say how tall the bar is.
        Which value does the bar reach?
        Tell me how high the bar is.
        Identify the value of the bar.
        What is the bar's value?
        """,
        """
        Tell me the value of the bar.
        How high does the bar go?
        Identify the bar's value.
        The bar is how tall?
        """,
    ),
    "chart_trend": _family(
        """
        Describe the trend of the bars from left to right.
        What is the trend of the bars from left to right?
        How do the bars change from left to right?
        Name the trend of the bars.
        Describe how the bars go from left to right.
        Which trend do the bars show from left to right?
        What trend does the chart show?
        Say the trend of the bars from left to right.
        Tell me how the bars change from left to right.
        Identify the trend of the bars.
        """,
        """
        Tell me the trend of the bars, left to right.
        From left to right, how do the bars change?
        Identify the trend of this chart.
        What shape does the trend of the bars have?
        """,
    ),
    "text_entailment": _family(
        """
        Premise: "{premise}". Hypothesis: "{hypothesis}". Answer entailment, neutral or contradiction.
        Premise: "{premise}". Does it entail "{hypothesis}"? Answer entailment, neutral or contradiction.
        Given "{premise}", is "{hypothesis}" entailment, neutral or contradiction?
        Text: "{premise}". Hypothesis: "{hypothesis}". Entailment, neutral or contradiction?
        Read "{premise}". Then judge "{hypothesis}": entailment, neutral or contradiction.
        Premise "{premise}" and hypothesis "{hypothesis}": answer entailment, neutral or contradiction.
        If "{premise}", then is "{hypothesis}" entailment, neutral or contradiction?
        Premise: "{premise}". Claim: "{hypothesis}". Reply entailment, neutral or contradiction.
        Statement: "{premise}". Hypothesis: "{hypothesis}". Answer entailment, neutral or contradiction.
        We know that "{premise}". Does it support "{hypothesis}"? Answer entailment, neutral or contradiction.
        Check "{hypothesis}" against the premise "{premise}": entailment, neutral or contradiction.
        Two statements: "{premise}" and "{hypothesis}". Answer entailment, neutral or contradiction.
        """,
        """
        Statement one: "{premise}". Statement two: "{hypothesis}". Say entailment, neutral or contradiction.
        Does "{premise}" support "{hypothesis}"? Answer entailment, neutral or contradiction.
        Judge "{hypothesis}" against "{premise}": entailment, neutral or contradiction.
        We know "{premise}". Is "{hypothesis}" entailment, neutral or contradiction?
        """,
    ),
}
