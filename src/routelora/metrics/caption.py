"""Caption metrics (CIDEr-D, BLEU-4, ROUGE-L, METEOR) through pycocoevalcap.

The scorers are pycocoevalcap's own, so figures are comparable with published COCO numbers. Only tokenisation
has a second path: pycocoevalcap's ``PTBTokenizer`` runs Stanford CoreNLP through ``java``; where no ``java`` is
on PATH (or the call fails) a pure-Python tokenizer with the same rules is used instead, and the result says
which one ran. METEOR has no Python fallback: it is reported only where ``java`` runs it.

CIDEr-D computes its document frequencies from the references of the evaluated set (pycocoevalcap's standard
behaviour, kept on purpose). Two consequences a caller should know: a set of ONE sample always scores 0.0
(every n-gram has idf log(1/1) = 0), and n-grams present in the references of every sample carry no weight.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

# pycocoevalcap's CiderScorer multiplies the clipped cosine similarity (<= 1) by 10, so 10.0 is its hard cap.
CIDER_MAXIMUM = 10.0

_PUNCTUATIONS = frozenset(PUNCTUATIONS)

# PTB keeps these with their period ("mr. smith"); a small list, as captions rarely hold abbreviations.
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.", "etc.", "inc.", "co.", "no."})
_ACRONYM = re.compile(r"^(?:[a-z]\.)+$")
_CLITIC = re.compile(r"^(.+?)('s|'m|'re|'ve|'ll|'d)$")
# PTB splits these words in two ("cannot" -> "can not"); mirrored so that n-gram counts agree.
_SPLIT_WORDS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "wanna": ["wan", "na"], "gotta": ["got", "ta"]}
# Lower-cased PTB bracket escapes; PUNCTUATIONS lists them upper-case, so pycocoevalcap keeps them. Mirrored.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
# Unicode forms PTB normalises: curly quotes, dashes (to "--", dropped), ellipsis (dropped) and the pound sign.
_CHAR_MAP = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": " -- ",
        "\u2014": " -- ",
        "\u2026": " ... ",
        "\u00a3": " # ",
    }
)
# A comma is a separate token unless it sits between digits ("1,000").
_COMMA = re.compile(r"(?<!\d),|,(?!\d)")


def _split_raw_token(token: str) -> list[str]:
    """Split one whitespace-delimited, lower-cased token the way PTB does for caption-like text."""
    if token in _PUNCTUATIONS or token in _ABBREVIATIONS or _ACRONYM.match(token):
        return [token]
    head: list[str] = []
    tail: list[str] = []
    while len(token) > 1 and token[0] in "'`$*":
        head.append(token[0])
        token = token[1:]
    while len(token) > 1:
        if token.endswith("...") and len(token) > 3:
            tail.insert(0, "...")
            token = token[:-3]
        elif token[-1] in "?!":
            # PTB keeps a run such as "?!" as one token, which is not in PUNCTUATIONS and so survives.
            run = re.search(r"[?!]+$", token).group(0)
            if run == token:
                break
            tail.insert(0, run)
            token = token[: -len(run)]
        elif token[-1] == "." and (token in _ABBREVIATIONS or _ACRONYM.match(token)):
            break
        elif token[-1] in ".,;:'*%`":
            tail.insert(0, token[-1])
            token = token[:-1]
        else:
            break
    core: list[str]
    if token in _SPLIT_WORDS:
        core = list(_SPLIT_WORDS[token])
    elif token.endswith("n't") and len(token) > 3:
        core = [token[:-3], "n't"]
    elif (match := _CLITIC.match(token)) is not None:
        core = [match.group(1), match.group(2)]
    else:
        core = [token]
    return head + core + tail


def python_ptb_tokenize(caption: str) -> str:
    """Tokenise one caption like pycocoevalcap's PTBTokenizer, without Java.

    Rules: lower-case; split off brackets (as PTB's escapes), quotes, sentence punctuation, ``$``/``%``,
    clitics ("doesn't" -> "does n't", "cat's" -> "cat 's"); keep numbers ("3.5", "1,000", "10:30"),
    hyphenated words and acronyms ("u.s."); then drop tokens in pycocoevalcap's ``PUNCTUATIONS`` list. It is
    an approximation of the Stanford tokenizer that agrees on ordinary English captions; rare constructions
    (e.g. "dog,cat" without a space, URLs) may still be split differently.
    """
    text = " ".join(caption.translate(_CHAR_MAP).lower().split())
    for bracket, escape in _BRACKETS.items():
        text = text.replace(bracket, f" {escape} ")
    # PTB turns double quotes into `` / '' (both dropped) and isolates "--".
    text = _COMMA.sub(" , ", text.replace('"', " '' ").replace("--", " -- "))
    tokens = [piece for raw in text.split() for piece in _split_raw_token(raw)]
    return " ".join(token for token in tokens if token not in _PUNCTUATIONS)


def java_available() -> bool:
    """True where a ``java`` executable is on PATH (needed by the PTB tokenizer and METEOR)."""
    return shutil.which("java") is not None


def _java_ptb_tokenize(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # The Java tool reads one caption per line: any line break inside a caption would shift every later one.
    payload = {key: [{"caption": " ".join(c.split())} for c in caps] for key, caps in captions.items()}
    result = PTBTokenizer().tokenize(payload)
    # pycocoevalcap zips ids with output lines, so a short output silently drops captions; refuse that.
    if any(len(result.get(key, [])) != len(caps) for key, caps in captions.items()):
        raise RuntimeError("PTBTokenizer returned a different number of captions than it was given")
    return result


def tokenize_captions(captions: dict[str, list[str]], tokenizer: str = "auto") -> tuple[dict[str, list[str]], str]:
    """Tokenise ``{key: [caption, ...]}``; return the tokenised dict and the tokenizer used (``ptb``/``python``).

    ``tokenizer``: ``"auto"`` (PTB via Java where ``java`` is on PATH and works, else Python), ``"ptb"`` (Java
    only; errors propagate) or ``"python"``.
    """
    if tokenizer not in ("auto", "ptb", "python"):
        raise ValueError(f"tokenizer must be 'auto', 'ptb' or 'python', got {tokenizer!r}")
    if tokenizer == "ptb" or (tokenizer == "auto" and java_available()):
        try:
            return _java_ptb_tokenize(captions), "ptb"
        except Exception:
            if tokenizer == "ptb":
                raise
    return {key: [python_ptb_tokenize(c) for c in caps] for key, caps in captions.items()}, "python"


def validate_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[str]]:
    """Check lengths and shapes; return references as lists (a bare string becomes a one-element list)."""
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length: {len(predictions)} != {len(references)}")
    if len(predictions) == 0:
        raise ValueError("no samples to evaluate: predictions and references are empty")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    for index, sample_refs in enumerate(refs):
        if not sample_refs:
            raise ValueError(f"sample {index} has no reference")
    return refs


def _meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, str]:
    if not java_available():
        return None, "METEOR omitted: java not found on PATH"
    try:
        from pycocoevalcap.meteor.meteor import Meteor

        # "|||" is METEOR's field separator on its stdin protocol; pycocoevalcap only cleans the hypothesis.
        clean_gts = {key: [r.replace("|||", "") for r in refs] for key, refs in gts.items()}
        meteor = Meteor()
        try:
            score, _ = meteor.compute_score(clean_gts, res)
        finally:
            del meteor  # stops the JVM now rather than at garbage collection
        return float(score), ""
    except Exception as error:  # the JVM can fail to start (memory, missing jar): report, do not crash eval
        return None, f"METEOR omitted: java failed ({type(error).__name__}: {error})"


@dataclass(frozen=True)
class CaptionScores:
    """Corpus-level caption scores. ``cider`` is on pycocoevalcap's scale (good COCO models ~1.0, cap 10.0)."""

    cider: float
    bleu4: float
    rouge_l: float
    meteor: float | None
    tokenizer: str
    meteor_note: str = ""
    per_sample_cider: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict; ``meteor`` is left out when it was not computed."""
        out = asdict(self)
        if self.meteor is None:
            del out["meteor"]
        return out


def caption_metrics(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenizer: str = "auto",
    meteor: bool = True,
) -> CaptionScores:
    """Score generated captions against several references per sample.

    Args:
        predictions: one generated caption per sample.
        references: the reference captions of each sample.
        tokenizer: ``"auto"``, ``"ptb"`` or ``"python"`` (see :func:`tokenize_captions`).
        meteor: compute METEOR (starts a JVM, ~10 s) where java works; when skipped or unavailable,
            ``meteor`` is None and ``meteor_note`` says why.
    """
    refs = validate_inputs(predictions, references)
    # One tokenizer call for both sides: each Java call starts a JVM.
    keyed = {f"r{i}": sample_refs for i, sample_refs in enumerate(refs)}
    keyed.update({f"p{i}": [pred] for i, pred in enumerate(predictions)})
    tokenized, tokenizer_used = tokenize_captions(keyed, tokenizer)
    gts = {str(i): tokenized[f"r{i}"] for i in range(len(refs))}
    res = {str(i): tokenized[f"p{i}"] for i in range(len(refs))}

    cider, per_sample = Cider().compute_score(gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    meteor_value, note = _meteor_score(gts, res) if meteor else (None, "METEOR omitted: not requested")
    return CaptionScores(
        cider=float(cider),
        bleu4=float(bleu[3]),
        rouge_l=float(rouge),
        meteor=meteor_value,
        tokenizer=tokenizer_used,
        meteor_note=note,
        per_sample_cider=[float(s) for s in per_sample],
    )
