"""Answer metrics (accuracy, multi-label precision, relaxed accuracy, ANLS, multiple choice, number match).

Each returns a dict with the headline figure under ``score``, the other figures under their own keys, and one
score per sample under ``per_sample``. ``references`` is always ``list[list[str]]`` (one-element lists for a
single gold answer). :mod:`routelora.metrics.registry` names them for task files.

Normalisation (:func:`normalize_answer`): lower-case, collapse whitespace, strip surrounding whitespace and
double quotes, strip trailing ``. , ; : ! ?``. Articles (a/an/the) are kept by default: the label sets used
here (entailment/neutral/contradiction, yes/no, genre names) contain none, and removing them would make
"a" (a common option/letter answer) vanish; pass ``strip_articles=True`` to ``accuracy`` for VQA-style data.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from routelora.metrics.caption import validate_inputs

MetricResult = dict[str, Any]
_TRAILING = ".,;:!?" + string.whitespace
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalize_answer(text: str, strip_articles: bool = False) -> str:
    """Lower-case, collapse whitespace, drop surrounding double quotes and trailing punctuation."""
    text = " ".join(text.lower().split()).strip('"').rstrip(_TRAILING).strip('" ')
    if strip_articles:
        text = " ".join(_ARTICLES.sub(" ", text).split())
    return text


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


# --------------------------------------------------------------------------------------------- accuracy


def map_to_label(prediction: str, labels: Sequence[str]) -> str | None:
    """Map free text to one label (normalised), or None when it names none.

    An exact match wins; otherwise the label occurring earliest as a whole phrase ("Entailment." ->
    "entailment", "no, it is not" -> "no"), the longer label on a tie so that "not hateful" beats "hateful".
    """
    text = normalize_answer(prediction)
    normalized = {normalize_answer(label) for label in labels}
    if text in normalized:
        return text
    found = []
    for label in normalized:
        match = re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text) if label else None
        if match is not None:
            found.append((match.start(), -len(label), label))
    return min(found)[2] if found else None


def accuracy(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    labels: Sequence[str] | None = None,
    strip_articles: bool = False,
) -> MetricResult:
    """Exact-match accuracy after normalisation; a sample is right when it matches any of its references.

    With ``labels``, each prediction is first mapped to a label (:func:`map_to_label`); one naming no label
    counts as wrong and is counted in ``unmatched_rate``.
    """
    refs = validate_inputs(predictions, references)
    per_sample: list[float] = []
    unmatched = 0
    for prediction, golds in zip(predictions, refs):
        if labels is not None:
            answer = map_to_label(prediction, labels)
            unmatched += answer is None
        else:
            answer = normalize_answer(prediction, strip_articles)
        gold_set = {normalize_answer(g, strip_articles) for g in golds}
        per_sample.append(1.0 if answer is not None and answer in gold_set else 0.0)
    result: MetricResult = {"score": _mean(per_sample), "accuracy": _mean(per_sample), "per_sample": per_sample}
    if labels is not None:
        result["unmatched_rate"] = unmatched / len(per_sample)
    return result


# ---------------------------------------------------------------------------------------------- multi-label

# Comma, semicolon, newline, "|", "/" and the word "and": no MM-IMDb genre contains any of them.
_LIST_SEPARATOR = re.compile(r"[,;\n|/]|\band\b")


def _label_key(text: str) -> str:
    # Spelling-insensitive key so that "Sci-Fi", "sci fi" and "scifi" are one label.
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def parse_label_list(text: str, labels: Sequence[str] | None = None) -> set[str]:
    """Parse "action, comedy and drama" into label keys; keep only those in ``labels`` when given."""
    keys = {_label_key(normalize_answer(item)) for item in _LIST_SEPARATOR.split(text)}
    keys.discard("")
    if labels is not None:
        keys &= {_label_key(label) for label in labels}
    return keys


def multilabel_precision(
    predictions: Sequence[str], references: Sequence[Sequence[str]], labels: Sequence[str] | None = None
) -> MetricResult:
    """Micro-averaged multi-label precision / recall / F1 and exact-set match.

    Micro-averaging pools true/false positives over all samples before dividing, so frequent labels weigh
    more. Each reference element is a comma-separated gold list (several elements are united). ``per_sample``
    holds sample-level precision (|P & G| / |P|; an empty prediction scores 1.0 only against an empty gold);
    its mean is not the micro figure.
    """
    refs = validate_inputs(predictions, references)
    true_pos = false_pos = false_neg = 0
    per_sample: list[float] = []
    exact: list[float] = []
    for prediction, golds in zip(predictions, refs):
        predicted = parse_label_list(prediction, labels)
        gold = set().union(*(parse_label_list(g) for g in golds))
        hits = len(predicted & gold)
        true_pos += hits
        false_pos += len(predicted) - hits
        false_neg += len(gold) - hits
        per_sample.append(hits / len(predicted) if predicted else float(not gold))
        exact.append(float(predicted == gold))
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 0.0
    recall = true_pos / (true_pos + false_neg) if true_pos + false_neg else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "score": precision,
        "micro_precision": precision,
        "micro_recall": recall,
        "micro_f1": f1,
        "exact_match": _mean(exact),
        "per_sample": per_sample,
    }


# ------------------------------------------------------------------------------------------ relaxed (ChartQA)

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_GROUPED_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def parse_number(text: str) -> float | None:
    """Read an answer that is just a number: "1,234.5", "-3", "$12", "45%" (read as 45), else None."""
    s = normalize_answer(text).replace("\u2212", "-")
    sign = s[0] if s[:1] in ("+", "-") else ""
    s = s[len(sign) :].strip().removeprefix("$").strip().removesuffix("%").strip()
    if _GROUPED_NUMBER.fullmatch(s):
        s = s.replace(",", "")
    return float(sign + s) if _PLAIN_NUMBER.fullmatch(s) else None


def relaxed_match(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """ChartQA relaxed correctness: numbers within ``tolerance`` relative error, otherwise exact match.

    "%" is dropped and the value read as written, so "45%" matches "45" and does not match "0.45" (the
    pix2struct reference divides by 100 instead; ChartQA gold values are written without the sign). A zero
    target needs an exact zero. A tiny epsilon keeps boundary cases such as 1.05 vs 1 on the inclusive side.
    """
    pred_num, target_num = parse_number(prediction), parse_number(target)
    if pred_num is not None and target_num is not None:
        if target_num == 0:
            return pred_num == 0
        return abs(pred_num - target_num) / abs(target_num) <= tolerance + 1e-9
    return normalize_answer(prediction) == normalize_answer(target)


def relaxed_accuracy(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tolerance: float = 0.05
) -> MetricResult:
    """Share of samples whose prediction relaxed-matches any reference (:func:`relaxed_match`)."""
    refs = validate_inputs(predictions, references)
    per_sample = [float(any(relaxed_match(p, g, tolerance) for g in golds)) for p, golds in zip(predictions, refs)]
    return {"score": _mean(per_sample), "relaxed_accuracy": _mean(per_sample), "per_sample": per_sample}


# ----------------------------------------------------------------------------------------------- ANLS


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute; cost 1 each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def anls_score(prediction: str, golds: Sequence[str], threshold: float = 0.5) -> float:
    """Best normalised Levenshtein similarity over the golds; 0.0 when below ``threshold``.

    Strings are lower-cased, stripped and whitespace-collapsed. A similarity exactly at the threshold counts
    (>= 0.5, as in the HF ``evaluate`` and lmms-eval implementations).
    """
    if isinstance(golds, str):  # a bare string would be iterated character by character
        golds = [golds]
    pred = " ".join(prediction.lower().split())
    best = 0.0
    for gold in golds:
        gold = " ".join(gold.lower().split())
        longest = max(len(pred), len(gold))
        best = max(best, 1.0 if longest == 0 else 1.0 - levenshtein(pred, gold) / longest)
    return best if best >= threshold else 0.0


def anls(predictions: Sequence[str], references: Sequence[Sequence[str]], threshold: float = 0.5) -> MetricResult:
    """Average Normalised Levenshtein Similarity (DocVQA)."""
    refs = validate_inputs(predictions, references)
    per_sample = [anls_score(p, golds, threshold) for p, golds in zip(predictions, refs)]
    return {"score": _mean(per_sample), "anls": _mean(per_sample), "per_sample": per_sample}


# ------------------------------------------------------------------------------------------ multiple choice

Options = Mapping[str, str] | Sequence[str]


def _option_map(options: Options | None) -> dict[str, str]:
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return {letter.strip().upper(): text for letter, text in options.items()}
    return {string.ascii_uppercase[i]: text for i, text in enumerate(options)}


def extract_choice(text: str, options: Options | None = None, letters: str | None = None) -> str | None:
    """Return the option letter a model's answer names, or None.

    Tried in order: a lone letter ("B", "(b)", "B."), "answer/option/choice is B", a leading "B)"/"B."/"B:",
    the option text itself (``options``: letter->text mapping or list for A, B, ...), a bracketed "(B)"
    anywhere, a single standalone capital letter. Letters are limited to ``letters`` (default: the options'
    letters, else "ABCDE"); outside brackets or a lone-letter answer they must be upper-case, and a sentence-
    initial "A" followed by a lower-case word is read as the article.
    """
    option_map = _option_map(options)
    valid = set((letters or "".join(option_map) or "ABCDE").upper())
    text = text.replace("*", "").strip()
    patterns = (
        r"^[(\[]?([A-Za-z])[)\]]?[.:,]?$",
        r"(?i:\b(?:answer|option|choice)\b)(?:\s*(?i:is|:))*\s*(?:\(([A-Za-z])\)|([A-Z])\b)",
        r"^(?:\(([A-Za-z])\)|([A-Z])[).:])(?:\s|$)",
    )
    for pattern in patterns:
        match = re.search(pattern, text)
        letter = next((g for g in match.groups() if g), "").upper() if match else ""
        if letter in valid:
            return letter
    if option_map:
        normalized = normalize_answer(text)
        texts = {letter: normalize_answer(t) for letter, t in option_map.items() if normalize_answer(t)}
        exact = [letter for letter, t in texts.items() if t == normalized]
        if len(exact) == 1:
            return exact[0]
        found = {letter: t for letter, t in texts.items() if re.search(rf"(?<!\w){re.escape(t)}(?!\w)", normalized)}
        # Drop options contained in a longer found one ("red" inside "dark red").
        kept = [letter for letter, t in found.items() if not any(t != o and t in o for o in found.values())]
        if len(kept) == 1:
            return kept[0]
    bracketed = [m.upper() for m in re.findall(r"\(([A-Za-z])\)", text) if m.upper() in valid]
    if bracketed:
        return bracketed[0]
    standalone = {
        m.group(1)
        for m in re.finditer(r"\b([A-Z])\b", text)
        if m.group(1) in valid and not (m.group(1) == "A" and re.match(r" [a-z]", text[m.end() :]))
    }
    return standalone.pop() if len(standalone) == 1 else None


def multiple_choice(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    options: Sequence[Options | None] | None = None,
    labels: Sequence[str] | None = None,
) -> MetricResult:
    """Accuracy of extracted option letters against gold letters (MMBench style).

    ``options`` gives each sample's options (for matching the option text); ``labels`` the allowed letters.
    """
    refs = validate_inputs(predictions, references)
    if options is not None and len(options) != len(predictions):
        raise ValueError(f"options and predictions differ in length: {len(options)} != {len(predictions)}")
    letters = "".join(labels) if labels is not None else None
    per_sample: list[float] = []
    unparsed = 0
    for index, (prediction, golds) in enumerate(zip(predictions, refs)):
        choice = extract_choice(prediction, options[index] if options is not None else None, letters)
        unparsed += choice is None
        gold_letters = {g.strip().strip("()[].:").upper() for g in golds}
        per_sample.append(float(choice is not None and choice in gold_letters))
    score = _mean(per_sample)
    return {"score": score, "accuracy": score, "unparsed_rate": unparsed / len(per_sample), "per_sample": per_sample}


# ------------------------------------------------------------------------------------------- number match

# A minus is a sign only when not glued to a preceding letter/digit ("3-4" ends in 4); thousands groups need
# exactly three digits so that "3,4" reads as two numbers.
_NUMBER = re.compile(r"(?:(?<![0-9A-Za-z])[-\u2212])?(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def extract_last_number(text: str) -> float | None:
    """The last number in ``text`` ("... = 1,234." -> 1234.0, "-5" -> -5.0), or None."""
    matches = _NUMBER.findall(text)
    return float(matches[-1].replace(",", "").replace("\u2212", "-")) if matches else None


def number_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> MetricResult:
    """Exact match of the last number in the prediction with the gold number (MGSM); 12.0 equals 12."""
    refs = validate_inputs(predictions, references)
    per_sample: list[float] = []
    for prediction, golds in zip(predictions, refs):
        value = extract_last_number(prediction)
        gold_values = {extract_last_number(g) for g in golds} - {None}
        per_sample.append(float(value is not None and value in gold_values))
    score = _mean(per_sample)
    return {"score": score, "exact_match": score, "per_sample": per_sample}
