"""Layers with the textbook protocol (params, grads, forward, backward)."""
from .recurrent import GRUCell, LSTMCell, RNNCell, TimeGRU, TimeLSTM, TimeRNN

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "TimeRNN", "TimeLSTM", "TimeGRU"]
from .embedding import Embedding, TimeEmbedding
from .affine import Affine, TimeAffine
from .dropout import TimeDropout
from .attention import TimeAttention

__all__ += ["Embedding", "TimeEmbedding", "Affine", "TimeAffine", "TimeDropout",
            "TimeAttention"]
