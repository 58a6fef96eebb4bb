"""The world's instruction families: every question type is asked in many phrasings, some kept for testing only.

Real instruction data is rarely one template per task, and a router or a base that has only seen one wording fails
on the next. Each family lists the phrasings that train, test and corpus samples draw from, and a disjoint set of
held-out phrasings that only the ``test_reworded`` split uses. Held-out phrasings are new sentences, but every word
in them occurs somewhere in the training phrasings (a test checks it): a model that never read a word cannot know
its meaning, so they test rewording, not vocabulary. Placeholders (``{hypothesis}``, ``{text}``...) are filled by
the task's generator.
"""

from __future__ import annotations

from .general_phrasings import GENERAL_FAMILIES
from .phrasings import Phrasings, family

SPECIALISED_FAMILIES: dict[str, Phrasings] = {
    "caption": family(
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
    "entailment": family(
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
    "meme": family(
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
    "genre": family(
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
    "chart_trend": family(
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
    "text_entailment": family(
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

FAMILIES: dict[str, Phrasings] = {**SPECIALISED_FAMILIES, **GENERAL_FAMILIES}
"""Every family by name: the specialised and ablation tasks' (above) and the general skills' (retention benchmarks
and pretraining questions, :mod:`.general_phrasings`)."""
