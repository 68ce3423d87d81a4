"""Layers with the textbook protocol (params, grads, forward, backward)."""
from .recurrent import GRUCell, LSTMCell, RNNCell, TimeGRU, TimeLSTM, TimeRNN

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "TimeRNN", "TimeLSTM", "TimeGRU"]
