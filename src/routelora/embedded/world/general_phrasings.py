"""Instruction families of the general skills: the retention benchmarks (mcq, chart, doc) and the pretraining
questions (basics). See :mod:`.instructions` for what a family is and how held-out phrasings are used."""

from __future__ import annotations

from .phrasings import Phrasings, family

GENERAL_FAMILIES: dict[str, Phrasings] = {
    "mcq_count": family(
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
    "mcq_shape": family(
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
    "mcq_colour": family(
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
    "mcq_row": family(
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
    "mcq_answer": family(
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
    "chart_highest": family(
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
    "chart_lowest": family(
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
    "chart_range": family(
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
    "chart_count": family(
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
    "doc_full": family(
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
    "doc_first": family(
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
    "doc_second": family(
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
    "doc_last": family(
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
    "basics_colour": family(
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
    "basics_shape": family(
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
    "basics_row": family(
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
    "basics_what_at": family(
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
    "basics_count": family(
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
    "basics_letter": family(
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
    "basics_bar_value": family(
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
}
