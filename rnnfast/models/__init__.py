"""Models built from layers and networks, each with params, grads,
forward(...) -> loss, backward(), train()/eval() and get_config()."""
from .lm import RnnLM, perplexity

__all__ = ["RnnLM", "perplexity"]
from .seq2seq import AttentionSeq2seq, PeekySeq2seq, Seq2seq

__all__ += ["Seq2seq", "PeekySeq2seq", "AttentionSeq2seq"]
from .sequence import SequenceClassifier, SequenceRegressor, SequenceTagger

__all__ += ["SequenceTagger", "SequenceClassifier", "SequenceRegressor"]
