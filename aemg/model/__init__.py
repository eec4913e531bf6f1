"""Pre-trained token model: VQ codebook of contraction prototypes + masked-token Transformer.

Pure torch + numpy: the caller reads the token store and hands over :class:`TokenSet` arrays.
"""

from aemg.model.config import PRESETS, ModelConfig, ModelConfigError, preset
from aemg.model.data import (
    SentenceBatch,
    TokenSet,
    collate_sentences,
    content_hash,
    plan_sentence_batches,
    sentence_batches,
    sentence_chunks,
)
from aemg.model.mtm import MaskedTokenModel, random_mask
from aemg.model.synthetic import make_synthetic_tokenset
from aemg.model.tokenizer import Tokenizer
from aemg.model.train import (
    compute_codes,
    embed_tokens,
    load_checkpoint,
    load_model,
    pretrain,
    resolve_device,
)
from aemg.model.vq import VectorQuantizer, codebook_stats

__all__ = [
    "PRESETS",
    "MaskedTokenModel",
    "ModelConfig",
    "ModelConfigError",
    "SentenceBatch",
    "TokenSet",
    "Tokenizer",
    "VectorQuantizer",
    "codebook_stats",
    "collate_sentences",
    "compute_codes",
    "content_hash",
    "embed_tokens",
    "load_checkpoint",
    "load_model",
    "make_synthetic_tokenset",
    "plan_sentence_batches",
    "preset",
    "pretrain",
    "random_mask",
    "resolve_device",
    "sentence_batches",
    "sentence_chunks",
]
