# The check of one tuning setting given to a module's setter (the kernels'
# split limits, src/_seq.pxd; the chunking of inference, src/_dispatch.pyx):
# None (leave it as it is) or an integer in least..2**62, else an error
# naming the setting.
cdef inline int check_setting(str name, object value, long long least) except -1:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer >= {least} or None, got {value!r}")
    if not least <= value <= 2 ** 62:
        raise ValueError(f"{name}: expected an integer >= {least} or None, got {value}")
    return 0
