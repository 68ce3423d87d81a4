"""Models built from layers and networks, each with params, grads,
forward(...) -> loss, backward(), train()/eval() and get_config()."""
from .lm import RnnLM, perplexity

__all__ = ["RnnLM", "perplexity"]
