# The kernels' array arguments, taken by pointer.
#
# The kernel defs used to declare typed memoryviews (`const floating[:, :,
# ::1] xs`): for each argument Cython acquires a buffer, parses its format
# string and builds a memoryview object, and a fused def first looks up
# its specialisation by the arguments' types.  With 15-19 arrays a call,
# that was most of a kernel call at N = 1, T = 1 (perf: the memoryview
# machinery and the fused dispatch ~2 us of a 3.3 us rnn_forward call;
# docs/performance.md, item 36).  Here a def takes plain objects, picks
# the float or double version by xs's dtype (kernel_dtype), and `take`
# checks each array with a handful of flag tests and returns its data
# pointer and shape: what the memoryview declaration checked (an ndarray
# of that many dimensions and exactly that type, C-contiguous, aligned, in
# native byte order, writable unless only read), with the argument named
# in the error.
#
# The arguments are kept alive by the call itself; numpy refuses to resize
# an array that other references see (ndarray.resize's refcheck), which
# the call's own references are.  Resizing with refcheck=False while a
# kernel runs in another thread is as unsafe here as numpy says it is.
cimport numpy as cnp
from _blas cimport floating


cdef struct Arr:
    void* data
    const Py_ssize_t* shape


cdef inline int float_type(floating* tag) noexcept nogil:
    """numpy's type number of the fused type: NPY_FLOAT or NPY_DOUBLE."""
    return cnp.NPY_FLOAT if floating is float else cnp.NPY_DOUBLE


cdef inline int kernel_dtype(object xs) except -1:
    """NPY_FLOAT or NPY_DOUBLE: the version of a kernel that xs selects
    (every other array of the call must then have that type: `take`)."""
    cdef int t
    if cnp.PyArray_Check(xs):
        t = cnp.PyArray_TYPE(<cnp.ndarray> xs)
        if t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE:
            return t
        raise TypeError(f"xs: expected a float32 or float64 array, got dtype {xs.dtype}")
    raise TypeError(f"xs: expected a numpy.ndarray, got {type(xs).__name__}")


cdef inline int take(Arr* out, object a, str name, int ndim, int typenum,
                     bint writable) except -1:
    """out <- the data pointer and shape of `a`, after checking it is an
    ndarray of `ndim` dimensions and numpy type `typenum`, C-contiguous,
    aligned, in native byte order and (when `writable`) writable; else a
    TypeError or ValueError naming `name`."""
    cdef cnp.ndarray arr
    cdef int flags
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    arr = <cnp.ndarray> a
    flags = cnp.PyArray_FLAGS(arr)
    if (cnp.PyArray_NDIM(arr) != ndim or cnp.PyArray_TYPE(arr) != typenum
            or not cnp.PyArray_ISNOTSWAPPED(arr)
            or (flags & cnp.NPY_ARRAY_C_CONTIGUOUS) == 0
            or (flags & cnp.NPY_ARRAY_ALIGNED) == 0
            or (writable and (flags & cnp.NPY_ARRAY_WRITEABLE) == 0)):
        refuse(arr, name, ndim, typenum, writable)
    out.data = cnp.PyArray_DATA(arr)
    out.shape = <const Py_ssize_t*> cnp.PyArray_DIMS(arr)
    return 0


cdef inline int refuse(object a, str name, int ndim, int typenum,
                       bint writable) except -1:
    """The error for an array `take` refused, naming what is wrong (a
    Python object: numpy's attributes, not the C struct's fields)."""
    want = {cnp.NPY_FLOAT: "float32", cnp.NPY_DOUBLE: "float64"}.get(typenum, "intp")
    shape = a.shape
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {shape}")
    if cnp.PyArray_TYPE(<cnp.ndarray> a) != typenum or not a.dtype.isnative:
        raise TypeError(f"{name}: expected dtype {want} (native byte order), got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array (shape {shape})")
    if not a.flags.aligned:
        raise ValueError(f"{name}: expected an aligned array (shape {shape})")
    raise ValueError(f"{name}: is read-only (shape {shape})")


cdef inline bint float_array_match(object value, object dtype, int ndim):
    """Whether `value` is an ndarray (not a subclass) of `ndim` dimensions,
    C-contiguous and aligned, whose dtype is `dtype` itself, numpy's own
    float32 or float64 descriptor: the test _rnn.array_ready and the
    dispatcher's network_forward_common share (each then checks the sizes
    it needs)."""
    cdef cnp.ndarray arr
    if not cnp.PyArray_CheckExact(value):
        return False
    arr = <cnp.ndarray> value
    if (<object> cnp.PyArray_DESCR(arr) is not dtype or cnp.PyArray_NDIM(arr) != ndim
            or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr)):
        return False
    return (dtype is <object> cnp.PyArray_DescrFromType(cnp.NPY_FLOAT32)
            or dtype is <object> cnp.PyArray_DescrFromType(cnp.NPY_FLOAT64))


cdef inline bint arrays_match(object arrays, list shapes, object dtype, bint writable):
    """Whether `arrays` is a list of as many arrays as `shapes` (tuples of
    ints), each an ndarray (not a subclass) whose dtype is `dtype` itself,
    of its shape, C-contiguous, aligned and, if writable, writeable: the test of
    _rnn.arrays_ready (rnnfast._validation's fast path) and of the
    dispatcher's network_forward_common.  Read afresh at every call: an
    array reshaped in place or made read-only is seen."""
    cdef cnp.ndarray arr
    cdef cnp.npy_intp* dims
    cdef Py_ssize_t k, n
    cdef int i
    if type(arrays) is not list:
        return False
    n = len(shapes)
    if len(<list> arrays) != n:
        return False
    for k in range(n):
        a = (<list> arrays)[k]
        shape = shapes[k]
        if not cnp.PyArray_CheckExact(a) or type(shape) is not tuple:
            return False
        arr = <cnp.ndarray> a
        if (<object> cnp.PyArray_DESCR(arr) is not dtype
                or cnp.PyArray_NDIM(arr) != len(<tuple> shape)
                or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr)
                or (writable and not cnp.PyArray_ISWRITEABLE(arr))):
            return False
        dims = cnp.PyArray_DIMS(arr)
        for i in range(cnp.PyArray_NDIM(arr)):
            if dims[i] != (<tuple> shape)[i]:          # Python's comparison, as the check
                return False
    return True
