# Inline activations for the fused element-wise passes.  Both are finite
# and raise no floating-point warning for any finite input: sigmoid takes
# exp of a non-positive number only, tanh comes from libm.
from libc.math cimport exp, expf, tanh, tanhf
from _blas cimport floating


cdef inline floating sigmoid(floating x) noexcept nogil:
    cdef floating e
    if floating is float:
        if x >= 0:
            return 1.0 / (1.0 + expf(-x))
        e = expf(x)
        return e / (1.0 + e)
    else:
        if x >= 0:
            return 1.0 / (1.0 + exp(-x))
        e = exp(x)
        return e / (1.0 + e)


cdef inline floating tanh_(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)
