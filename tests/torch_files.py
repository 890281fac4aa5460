"""Writers of torch.save look-alike files, byte by byte, without torch (for the reader and converter tests)."""
import collections
import io
import pickle
import zipfile

import numpy as np

class Global:
    """Pickled as ``GLOBAL module name``, as torch's own classes and functions are."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle only accepts callables as reduce functions
        raise AssertionError("never called")


class Storage:
    def __init__(self, key, type_name, raw):
        self.key, self.type_name, self.raw = key, type_name, raw  # raw: 1-D numpy array


class Tensor:
    def __init__(self, storage, offset, size, stride, parameter=False):
        self.storage, self.offset, self.size, self.stride, self.parameter = storage, offset, size, stride, parameter

    def __reduce__(self):
        tensor = (Global("torch._utils", "_rebuild_tensor_v2"),
                  (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))
        if not self.parameter:
            return tensor
        return Global("torch._utils", "_rebuild_parameter"), (Reduced(tensor), True, collections.OrderedDict())


class Reduced:
    def __init__(self, reduce_value):
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


class TorchLikePickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + ("%s\n%s\n" % (obj.module, obj.name)).encode())

    dispatch[Global] = _save_global_ref

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        pid = ("storage", Global("torch", obj.type_name), obj.key, "cpu", obj.raw.size)
        return pid + (None,) if self.legacy else pid


def pickle_torch(obj, legacy):
    buf = io.BytesIO()
    TorchLikePickler(buf, legacy).dump(obj)
    return buf.getvalue()


def write_state_dict_zip(path, state, wrap=lambda sd: sd):
    """``torch.save(wrap(state))`` for ``{name: float32 array}``, one storage per tensor (zip format)."""
    storages, tensors = [], collections.OrderedDict()
    for index, (name, array) in enumerate(state.items()):
        array = np.ascontiguousarray(array)
        storage = Storage(str(index), "FloatStorage" if array.dtype == np.float32 else "LongStorage", array.ravel())
        strides = tuple(int(np.prod(array.shape[i + 1:])) for i in range(array.ndim))
        storages.append(storage)
        tensors[name] = Tensor(storage, 0, array.shape, strides)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_torch(wrap(tensors), legacy=False))
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            archive.writestr("archive/data/" + storage.key, storage.raw.tobytes())
