"""Readable reprs, as PyTorch's and scikit-learn's: ``Adam(lr=0.001, ...)``.

Objects whose __init__ arguments are kept under their own names get
``init_repr``: the class and every such argument, in the signature's order
(arguments not kept, such as random_state turned into a Generator, are left
out).  Layers built from weight arrays show their sizes instead
(``weights_repr``)."""
import inspect


def init_repr(obj):
    names = list(inspect.signature(type(obj).__init__).parameters)[1:]
    args = ", ".join(f"{n}={getattr(obj, n)!r}" for n in names if hasattr(obj, n))
    return f"{type(obj).__name__}({args})"


def weights_repr(obj, sizes, options=()):
    """Class(size, size, option=value..., dtype=float32) for a layer whose
    sizes come from its weights: sizes(obj) gives them; options: (name,
    value) pairs shown.  params are public lists: a layer whose weights were
    replaced by something without a shape or dtype still has a repr."""
    try:
        args = [str(s) for s in sizes(obj)] + [f"{k}={v!r}" for k, v in options]
        args.append(f"dtype={obj.dtype.name}")
    except (AttributeError, IndexError, TypeError):
        return object.__repr__(obj)
    return f"{type(obj).__name__}({', '.join(args)})"
