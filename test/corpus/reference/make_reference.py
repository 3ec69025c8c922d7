"""Independent reference fixtures for tflens's io tests, written with Python's struct/json and numpy
(no tflens code). Run: python3 make_reference.py  (writes ref.safetensors, ref_f32.npy, ref_i32.npy,
expected.json). The expected values are what numpy computes for each dtype conversion."""
import json, struct
import numpy as np

rng = np.random.default_rng(1234)
f32 = (rng.standard_normal((2, 3)) * 3).astype(np.float32)
f16 = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1035156e-05, 5.96e-08, 0.1, 1/3, -1000.7], dtype=np.float16)
f64 = rng.standard_normal(4)
i64 = np.array([[0, -1, 2147483647], [-2147483648, 12345, -7]], dtype=np.int64)
i32 = np.array([3, -4, 5], dtype=np.int32)
u8 = np.array([0, 7, 255], dtype=np.uint8)
# bfloat16: float32 bits rounded to nearest even on the upper 16 bits
bsrc = np.array([1.0, -3.140625, 0.1, 1e30, -1e-30, 2.0], dtype=np.float32)
b = bsrc.view(np.uint32).astype(np.uint64)
bf16 = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
bf16_f32 = (bf16.astype(np.uint32) << 16).view(np.float32)

tensors = [  # deliberately not in sorted order
    ("z.f32", "F32", f32.shape, f32.tobytes()),
    ("a.f16", "F16", f16.shape, f16.tobytes()),
    ("m.bf16", "BF16", bf16.shape, bf16.tobytes()),
    ("b.f64", "F64", f64.shape, f64.tobytes()),
    ("c.i64", "I64", i64.shape, i64.tobytes()),
    ("d.i32", "I32", i32.shape, i32.tobytes()),
    ("e.u8", "U8", u8.shape, u8.tobytes()),
    ("s.scalar", "F32", (), np.float32(42.5).tobytes()),
    ("empty", "F32", (0, 4), b""),
]
header = {"__metadata__": {"format": "pt", "source": "numpy reference"}}
data = b""
for name, dt, shape, raw in tensors:
    header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open("ref.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)

np.save("ref_f32.npy", f32)
np.save("ref_i32.npy", np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5)
expected = {
    "z.f32": {"shape": [2, 3], "values": [float(x) for x in f32.ravel()]},
    "a.f16": {"shape": [10], "values": [float(x) for x in f16.astype(np.float32)]},
    "m.bf16": {"shape": [6], "values": [float(x) for x in bf16_f32], "bits": [int(x) for x in bf16], "source": [float(x) for x in bsrc]},
    "b.f64": {"shape": [4], "values": [float(x) for x in f64.astype(np.float32)]},
    "c.i64": {"shape": [2, 3], "values": [int(x) for x in i64.ravel()]},
    "d.i32": {"shape": [3], "values": [int(x) for x in i32]},
    "e.u8": {"shape": [3], "values": [int(x) for x in u8]},
    "s.scalar": {"shape": [], "values": [42.5]},
    "empty": {"shape": [0, 4], "values": []},
    "f16_bits": [int(x) for x in f16.view(np.uint16)],
    "__metadata__": header["__metadata__"],
}
with open("expected.json", "w") as f:
    json.dump(expected, f, indent=1)
