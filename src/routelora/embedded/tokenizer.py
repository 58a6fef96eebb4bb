"""The embedded tiny VLM's tokenizer: byte-level BPE trained locally, so any text can be encoded.

Byte-level BPE starts from all 256 bytes, so words the training corpus never saw (a user's new task) still encode,
just in more pieces. Training it here (rather than downloading a pretrained vocabulary) keeps the tiny model
offline and its vocabulary small.
"""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END, IMAGE_TOKEN]

# ChatML, as Qwen2 uses it; messages may carry plain strings or lists of {"type": "image"|"text"} items.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>' }}{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``corpus``; deterministic for the same corpus and size."""
    # The chat template's own words are added so that role names become single tokens.
    texts = [*corpus, *(["user\nassistant\nsystem\n"] * 100)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token=PAD_TOKEN,
        eos_token=IM_END,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        additional_special_tokens=[IM_START, IMAGE_TOKEN],
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    return tokenizer
