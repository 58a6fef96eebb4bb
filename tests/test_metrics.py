"""Tests for routelora.metrics (answers, caption, registry) (hand-computed values, edge cases)."""

from __future__ import annotations

import math

import pytest

from routelora.metrics import METRICS, compute_metric, metric_maximum
from routelora.metrics import caption as cm
from routelora.metrics.answers import (
    accuracy,
    anls,
    anls_score,
    extract_choice,
    extract_last_number,
    levenshtein,
    map_to_label,
    multilabel_precision,
    multiple_choice,
    normalize_answer,
    number_match,
    parse_label_list,
    parse_number,
    relaxed_accuracy,
    relaxed_match,
)
from routelora.metrics.caption import caption_metrics, python_ptb_tokenize, tokenize_captions

needs_java = pytest.mark.skipif(not cm.java_available(), reason="java not on PATH: PTB tokenizer / METEOR")

# Captions with the punctuation, clitics, numbers and brackets that PTB treats specially.
CAPTIONS = [
    "A man riding a horse on the beach.",
    "Two dogs, playing in the snow!",
    "A black-and-white photo of a cat's toy (red).",
    "He doesn't like it; she can't.",
    '"Quoted" words -- and dashes - here...',
    "A 3.5 inch disk at 10:30 costs $5.00.",
    "U.S. flag on a pole",
    "people's kids' toys, what?!",
    "I'm sure they'll see a 50% discount.",
    "A table \u2014 with pizza, and a \u201cvintage\u201d car.",
]
PREDICTIONS = [
    "a man rides a horse on a beach",
    "two dogs play in snow.",
    "a photo of a cat toy",
    "he does not like it",
    "quoted words and dashes",
    "a disk that costs $5",
    "a flag on a pole",
    "kids' toys",
    "they see a discount",
    "a table with pizza",
]


def test_python_tokenizer_rules() -> None:
    assert python_ptb_tokenize("A man riding a horse.") == "a man riding a horse"
    assert python_ptb_tokenize("He doesn't like it; she can't.") == "he does n't like it she ca n't"
    assert python_ptb_tokenize("A 3.5 inch disk costs $5.00.") == "a 3.5 inch disk costs $ 5.00"
    assert python_ptb_tokenize("U.S. flag, 1,000 people") == "u.s. flag 1,000 people"
    # PTB lower-cases its bracket escapes, so pycocoevalcap (upper-case list) keeps them; mirrored on purpose.
    assert python_ptb_tokenize("a toy (red)") == "a toy -lrb- red -rrb-"
    assert python_ptb_tokenize("") == ""


@needs_java
def test_python_tokenizer_matches_java_ptb() -> None:
    keyed = {str(i): [caption] for i, caption in enumerate(CAPTIONS + PREDICTIONS)}
    java, used = tokenize_captions(keyed, "ptb")
    assert used == "ptb"
    assert {key: [python_ptb_tokenize(c) for c in caps] for key, caps in keyed.items()} == java


@needs_java
def test_cider_same_with_both_tokenizers() -> None:
    references = [[c, p] for c, p in zip(CAPTIONS, reversed(PREDICTIONS))]
    ptb = caption_metrics(PREDICTIONS, references, tokenizer="ptb", meteor=False)
    python = caption_metrics(PREDICTIONS, references, tokenizer="python", meteor=False)
    assert (ptb.tokenizer, python.tokenizer) == ("ptb", "python")
    assert ptb.cider > 0.1
    assert python.cider == pytest.approx(ptb.cider, abs=1e-12)
    assert python.per_sample_cider == pytest.approx(ptb.per_sample_cider, abs=1e-12)
    assert python.bleu4 == pytest.approx(ptb.bleu4) and python.rouge_l == pytest.approx(ptb.rouge_l)


def test_cider_hand_computed_perfect_and_disjoint() -> None:
    # Identical single-reference caption, n-grams unique to its sample: every n-gram cosine is 1 -> 10 * 1.
    # Second prediction shares no n-gram with its reference -> 0. Mean 5.0.
    scores = caption_metrics(
        ["a man riding a brown horse", "zebra zebra zebra zebra"],
        [["a man riding a brown horse"], ["two dogs play in the snow"]],
        tokenizer="python",
        meteor=False,
    )
    assert scores.per_sample_cider == pytest.approx([10.0, 0.0])
    assert scores.cider == pytest.approx(5.0)
    assert scores.per_sample_cider[0] == pytest.approx(metric_maximum("cider"))
    assert scores.meteor is None and "not requested" in scores.meteor_note
    assert "meteor" not in scores.as_dict()


def test_caption_perfect_bleu_rouge_and_single_sample_cider_quirk() -> None:
    refs = [["a man riding a brown horse"], ["two dogs play in the snow"]]
    preds = ["A man riding a brown horse.", "Two dogs play in the snow!"]
    scores = caption_metrics(preds, refs, tokenizer="python", meteor=False)
    assert scores.bleu4 == pytest.approx(1.0, abs=1e-6)
    assert scores.rouge_l == pytest.approx(1.0)
    assert scores.cider == pytest.approx(10.0)
    # Document frequencies come from the evaluated set: with one sample every idf is log(1) = 0.
    alone = caption_metrics(["a man riding a brown horse"], refs[:1], tokenizer="python", meteor=False)
    assert alone.cider == 0.0


def test_caption_falls_back_without_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cm.shutil, "which", lambda _name: None)
    scores = caption_metrics(["a cat on a mat"], [["a cat on a mat"]], meteor=True)
    assert scores.tokenizer == "python"
    assert scores.meteor is None and "java not found" in scores.meteor_note


def test_caption_auto_falls_back_when_ptb_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cm.shutil, "which", lambda _name: "/usr/bin/java")

    def broken(_captions: dict[str, list[str]]) -> dict[str, list[str]]:
        raise RuntimeError("no jvm")

    monkeypatch.setattr(cm, "_java_ptb_tokenize", broken)
    assert tokenize_captions({"a": ["Hi."]})[1] == "python"
    with pytest.raises(RuntimeError):
        tokenize_captions({"a": ["Hi."]}, "ptb")
    with pytest.raises(ValueError, match="tokenizer"):
        tokenize_captions({"a": ["Hi."]}, "spacy")


@needs_java
def test_meteor_runs_with_java() -> None:
    scores = caption_metrics(["a man riding a horse", ""], [["a man riding a horse"], ["a dog"]], meteor=True)
    assert scores.meteor is not None, scores.meteor_note
    assert 0.0 < scores.meteor <= 1.0


def test_normalize_answer() -> None:
    assert normalize_answer('  "Yes."  ') == "yes"
    assert normalize_answer("The  Cat  sat!?") == "the cat sat"
    assert normalize_answer("the cat", strip_articles=True) == "cat"
    assert normalize_answer("") == ""


def test_map_to_label() -> None:
    labels = ["entailment", "neutral", "contradiction"]
    assert map_to_label("Entailment.", labels) == "entailment"
    assert map_to_label("It is a contradiction, not entailment", labels) == "contradiction"
    assert map_to_label("maybe", labels) is None
    assert map_to_label("Not hateful.", ["hateful", "not hateful"]) == "not hateful"
    assert map_to_label("nothing", ["no", "yes"]) is None  # whole words only


def test_accuracy_plain_and_with_labels() -> None:
    result = accuracy(["Yes.", "no", "The cat", ""], [["yes"], ["yes", "No"], ["cat"], ["yes"]])
    assert result["per_sample"] == [1.0, 1.0, 0.0, 0.0]
    assert result["score"] == 0.5
    assert accuracy(["The cat"], [["cat"]], strip_articles=True)["score"] == 1.0

    labels = ["entailment", "neutral", "contradiction"]
    preds = ["Entailment.", "neutral, I think", "I don't know", "contradiction"]
    result = accuracy(preds, [["entailment"], ["neutral"], ["neutral"], ["entailment"]], labels=labels)
    assert result["per_sample"] == [1.0, 1.0, 0.0, 0.0]
    assert result["unmatched_rate"] == 0.25


def test_parse_label_list() -> None:
    assert parse_label_list("Action, comedy and Sci Fi; drama") == {"action", "comedy", "scifi", "drama"}
    assert parse_label_list("action, spaceship", ["Action", "Comedy"]) == {"action"}
    assert parse_label_list("") == set()


def test_multilabel_micro_hand_computed() -> None:
    labels = ["action", "comedy", "drama", "horror", "thriller", "sci-fi", "romance"]
    preds = ["action, comedy", "drama and horror; thriller", "", "Sci Fi", "Romance."]
    golds = [["action"], ["drama, horror"], ["comedy"], ["sci-fi, romance"], ["romance"]]
    # TP = 1+2+0+1+1 = 5, FP = 1+1+0+0+0 = 2, FN = 0+0+1+1+0 = 2.
    result = multilabel_precision(preds, golds, labels=labels)
    assert result["score"] == pytest.approx(5 / 7)
    assert result["micro_precision"] == pytest.approx(5 / 7)
    assert result["micro_recall"] == pytest.approx(5 / 7)
    assert result["micro_f1"] == pytest.approx(5 / 7)
    assert result["exact_match"] == pytest.approx(0.2)
    assert result["per_sample"] == pytest.approx([0.5, 2 / 3, 0.0, 1.0, 1.0])


def test_multilabel_precision_differs_from_recall() -> None:
    result = multilabel_precision(["action", "drama"], [["action, comedy"], ["drama, war"]])
    assert result["micro_precision"] == 1.0
    assert result["micro_recall"] == 0.5
    assert result["micro_f1"] == pytest.approx(2 / 3)
    assert result["exact_match"] == 0.0


@pytest.mark.parametrize(
    ("text", "value"),
    [("1,234.5", 1234.5), ("-3", -3.0), ("$12", 12.0), ("45%", 45.0), ("45 %", 45.0), ("7.", 7.0), ("abc", None)],
)
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


def test_parse_number_rejects_non_numbers() -> None:
    assert [parse_number(text) for text in ("12 45", "1,23", "nan", "inf", "")] == [None] * 5


@pytest.mark.parametrize(
    ("prediction", "target", "correct"),
    [
        ("105", "100", True),  # exactly 5 %
        ("1.05", "1", True),  # 5 % despite float rounding
        ("106", "100", False),
        ("95.5", "100", True),
        ("-3", "-3.1", True),
        ("3", "-3", False),
        ("45%", "45", True),  # "%" dropped, value read as written
        ("45%", "0.45", False),
        ("$1,234", "1234", True),
        ("0", "0", True),
        ("0.01", "0", False),  # zero target needs an exact zero
        ("Yes", "yes.", True),
        ("yes", "no", False),
        ("", "0", False),
    ],
)
def test_relaxed_match(prediction: str, target: str, correct: bool) -> None:
    assert relaxed_match(prediction, target) is correct


def test_relaxed_accuracy_any_reference() -> None:
    result = relaxed_accuracy(["104", "Paris", "x"], [["100"], ["paris", "london"], ["y"]])
    assert result["per_sample"] == [1.0, 1.0, 0.0]
    assert result["score"] == pytest.approx(2 / 3)


def test_levenshtein() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("same", "same") == 0


def test_anls_threshold_boundary() -> None:
    assert anls_score("ab", ["ac"]) == 0.5  # similarity exactly 0.5 counts
    assert anls_score("abcd", ["abce"]) == 0.75
    assert anls_score("abcde", ["abxyz"]) == 0.0  # 0.4 < 0.5
    assert anls_score(" Hello  WORLD ", ["hello world"]) == 1.0
    assert anls_score("", [""]) == 1.0
    assert anls_score("", ["abc"]) == 0.0
    assert anls_score("ab", "ac") == 0.5  # a bare string is one gold, not its characters


def test_anls_max_over_references() -> None:
    result = anls(["1995", "abcd", "zzz"], [["1996", "1995"], ["abce", "xyz"], ["abc"]])
    assert result["per_sample"] == [1.0, 0.75, 0.0]
    assert result["score"] == pytest.approx(1.75 / 3)


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("b", "B"),
        ("Answer: B", "B"),
        ("The answer is B) red", "B"),
        ("The correct option is C.", "C"),
        ("answer: (c)", "C"),
        ("**D**", "D"),
        ("A. red", "A"),
        ("(A) red", "A"),
        ("I think (C) is right", "C"),
        ("I think B is right", "B"),
        ("A man riding a horse", None),  # article, not a letter
        ("The answer is E", None),  # not an offered letter with options A-D
        ("", None),
    ],
)
def test_extract_choice_variants(text: str, letter: str | None) -> None:
    assert extract_choice(text, letters="ABCD") == letter


def test_extract_choice_from_option_text() -> None:
    options = {"A": "red", "B": "dark red", "C": "blue"}
    assert extract_choice("Red.", options) == "A"
    assert extract_choice("It is dark red", options) == "B"  # "red" inside "dark red" is not a second match
    assert extract_choice("red or blue", options) is None
    assert extract_choice("blue", ["red", "green", "blue"]) == "C"


def test_multiple_choice_accuracy() -> None:
    preds = ["(B)", "The answer is A", "blue", "no idea"]
    options = [None, None, {"A": "red", "B": "blue"}, None]
    result = multiple_choice(preds, [["B"], ["C"], ["B"], ["A"]], options=options)
    assert result["per_sample"] == [1.0, 0.0, 1.0, 0.0]
    assert result["unparsed_rate"] == 0.25
    with pytest.raises(ValueError, match="3 != 4"):
        multiple_choice(preds, [["B"]] * 4, options=options[:3])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("The answer is 1,234.", 1234.0),
        ("She has -5 apples", -5.0),
        ("2 + 10 = 12", 12.0),
        ("x = -12.5.", -12.5),
        ("pages 3-4", 4.0),  # a hyphen after a digit is not a minus
        ("3,4", 4.0),
        ("1,234,567 people", 1234567.0),
        ("\u7b54\u6848\u662f12", 12.0),
        ("no number here", None),
    ],
)
def test_extract_last_number(text: str, value: float | None) -> None:
    assert extract_last_number(text) == value


def test_number_match() -> None:
    preds = ["So the total is 1,234", "12.0", "The answer is 7.", "-3", "none"]
    result = number_match(preds, [["1234"], ["12"], ["8"], ["-3"], ["0"]])
    assert result["per_sample"] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert result["score"] == pytest.approx(0.6)


def test_registry_names_and_maximum() -> None:
    names = {"cider", "accuracy", "multilabel_precision", "relaxed_accuracy"}
    names |= {"anls", "multiple_choice", "number_match"}
    assert set(METRICS) == names
    assert metric_maximum("cider") == 10.0
    assert all(metric_maximum(name) == 1.0 for name in names - {"cider"})


def test_registry_says_which_metrics_take_labels() -> None:
    """Task files are validated against each entry's ``labels``: it must match what the function accepts."""
    import inspect

    for name, spec in METRICS.items():
        accepts = "labels" in inspect.signature(spec.function).parameters
        assert accepts == (spec.labels is not None), name
    for name in ("relaxed_accuracy", "anls", "multiple_choice", "accuracy", "number_match"):
        parameters = set(inspect.signature(METRICS[name].function).parameters) - {"predictions", "references"}
        assert parameters - {"labels"} == set(METRICS[name].options), name
    with pytest.raises(ValueError, match="takes no option tolerence; its options: tolerance"):
        compute_metric("relaxed_accuracy", ["1"], [["1"]], tolerence=0.1)


@pytest.mark.parametrize(
    ("name", "preds", "refs", "expected"),
    [
        ("accuracy", ["Yes.", "no"], [["yes"], ["yes"]], 0.5),
        ("multilabel_precision", ["action, war", "drama"], [["action"], ["drama"]], 2 / 3),
        ("relaxed_accuracy", ["104", "50"], [["100"], ["60"]], 0.5),
        ("anls", ["abcd", "x"], [["abce"], ["y"]], 0.375),
        ("multiple_choice", ["(A)", "C"], [["A"], ["B"]], 0.5),
        ("number_match", ["= 12", "3"], [["12"], ["4"]], 0.5),
        ("cider", ["a man riding a brown horse", "zebra"], [["a man riding a brown horse"], ["dogs in snow"]], 5.0),
    ],
)
def test_compute_metric(name: str, preds: list[str], refs: list[list[str]], expected: float) -> None:
    options = {"tokenizer": "python"} if name == "cider" else {}
    result = compute_metric(name, preds, refs, **options)
    assert result["score"] == pytest.approx(expected)
    assert len(result["per_sample"]) == len(preds)
    assert all(isinstance(v, float) and math.isfinite(v) for v in result["per_sample"])
    assert result["score"] <= metric_maximum(name)


def test_compute_metric_labels_and_extra_keys() -> None:
    labels = ["entailment", "neutral", "contradiction"]
    result = compute_metric("accuracy", ["Entailment.", "maybe"], [["entailment"], ["neutral"]], labels=labels)
    assert result["per_sample"] == [1.0, 0.0] and result["unmatched_rate"] == 0.5
    cider = compute_metric("cider", ["a cat"], [["a cat"]], tokenizer="python")
    assert {"cider", "bleu4", "rouge_l", "tokenizer", "meteor_note"} <= set(cider)
    assert "per_sample_cider" not in cider
    # labels is ignored by metrics without a label set
    assert compute_metric("anls", ["ab"], [["ab"]], labels=["x"])["score"] == 1.0


def test_compute_metric_errors() -> None:
    with pytest.raises(ValueError, match="'bleu'.*accuracy.*number_match"):
        compute_metric("bleu", ["a"], [["a"]])
    with pytest.raises(ValueError, match="'bleu'"):
        metric_maximum("bleu")
    with pytest.raises(ValueError, match="2 != 1"):
        compute_metric("accuracy", ["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="empty"):
        compute_metric("anls", [], [])
    with pytest.raises(ValueError, match="sample 1 has no reference"):
        compute_metric("accuracy", ["a", "b"], [["a"], []])


def test_bare_string_reference_is_one_answer() -> None:
    assert compute_metric("accuracy", ["yes"], ["yes"])["score"] == 1.0  # type: ignore[list-item]
