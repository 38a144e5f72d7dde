// mqkv._mqkv: the compiled layer of the Python package, a thin nanobind binding over libmqkv.
// The Pythonic API (context managers, slices, dtype names, docs) lives in python/src/mqkv/*.py;
// this file only moves data and errors across: every decision is the library's.
//
// Errors: a failed Status raises the mqkv.Error subclass for its code (python/src/mqkv/_errors.py)
// with .code, .file and .offset set. Calls that read, decode, encode or write release the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mqkv/kvset.h"
#include "mqkv/llama.h"
#include "mqkv/measure.h"
#include "mqkv/mqkv.h"
#include "mqkv/simd.h"
#include "mqkv/version.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using mqkv::Status;

// A failed Status crossing into Python; translated by the exception translator below.
struct StatusError {
  Status status;
};

[[noreturn]] void Raise(const Status& s) { throw StatusError{s}; }
void Check(const Status& s) {
  if (!s.ok()) Raise(s);
}
template <typename T>
T Take(mqkv::Result<T>&& r) {
  if (!r.ok()) Raise(r.status());
  return std::move(r).value();
}

const char* ErrorClassName(mqkv::StatusCode c) {
  switch (c) {
    case mqkv::StatusCode::kInvalidArgument: return "InvalidArgument";
    case mqkv::StatusCode::kOutOfRange: return "OutOfRange";
    case mqkv::StatusCode::kFormatError: return "FormatError";
    case mqkv::StatusCode::kChecksumMismatch: return "ChecksumMismatch";
    case mqkv::StatusCode::kUnsupported: return "Unsupported";
    case mqkv::StatusCode::kIoError: return "IoError";
    default: return "Error";
  }
}

// Stable identifiers for Error.code (the library's StatusCodeName is for people).
const char* CodeId(mqkv::StatusCode c) {
  switch (c) {
    case mqkv::StatusCode::kInvalidArgument: return "invalid_argument";
    case mqkv::StatusCode::kOutOfRange: return "out_of_range";
    case mqkv::StatusCode::kFormatError: return "format_error";
    case mqkv::StatusCode::kChecksumMismatch: return "checksum_mismatch";
    case mqkv::StatusCode::kUnsupported: return "unsupported";
    case mqkv::StatusCode::kIoError: return "io_error";
    default: return "internal";
  }
}

void Translate(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const StatusError& e) {
    const Status& s = e.status;
    nb::object errors = nb::module_::import_("mqkv._errors");
    nb::object cls = errors.attr(ErrorClassName(s.code()));
    nb::object exc = cls(nb::str(s.ToString().c_str()));
    exc.attr("code") = nb::str(CodeId(s.code()));
    exc.attr("reason") = nb::str(s.message().c_str());
    exc.attr("file") = s.file().empty() ? nb::none() : nb::object(nb::str(s.file().c_str()));
    exc.attr("offset") = s.offset() ? nb::object(nb::int_(*s.offset())) : nb::none();
    PyErr_SetObject(cls.ptr(), exc.ptr());
  }
}

mqkv::DType ParseDType(const std::string& name) {
  if (name == "float32" || name == "f32") return mqkv::DType::kF32;
  if (name == "float16" || name == "f16") return mqkv::DType::kF16;
  if (name == "bfloat16" || name == "bf16") return mqkv::DType::kBF16;
  Raise(mqkv::InvalidArgument("dtype \"" + name + "\": expected float32, float16 or bfloat16"));
}

mqkv::Kind ParseKind(const std::string& k) {
  if (k == "k" || k == "K") return mqkv::Kind::kK;
  if (k == "v" || k == "V") return mqkv::Kind::kV;
  if (k == "q" || k == "Q") return mqkv::Kind::kQ;
  Raise(mqkv::InvalidArgument("kind \"" + k + "\": expected \"k\", \"v\" or \"q\""));
}

mqkv::CodecSpec ParseSpec(const std::string& text) {
  auto s = mqkv::CodecSpec::Parse(text);
  if (!s.ok()) Raise(mqkv::Status(s.status()).Prepend("codec \"" + text + "\""));
  return *s;
}

// numpy's element type for a decoded dtype: bfloat16 has none, so its bits come back as uint16.
nb::dlpack::dtype NumpyDType(mqkv::DType t) {
  switch (t) {
    case mqkv::DType::kF32: return nb::dtype<float>();
    case mqkv::DType::kF16: return nb::dlpack::dtype{uint8_t(nb::dlpack::dtype_code::Float), 16, 1};
    default: return nb::dtype<uint16_t>();
  }
}

using Array = nb::ndarray<nb::numpy>;
using F32In = nb::ndarray<const float, nb::ndim<3>, nb::c_contig, nb::device::cpu>;

// A new array that owns `bytes` (freed when numpy drops it).
Array OwnedArray(std::unique_ptr<uint8_t[]> buf, std::vector<size_t> shape, nb::dlpack::dtype dt) {
  uint8_t* p = buf.release();
  nb::capsule owner(p, [](void* q) noexcept { delete[] static_cast<uint8_t*>(q); });
  return Array(p, shape.size(), shape.data(), owner, nullptr, dt);
}

std::vector<int32_t> ToInts(const nb::handle& seq) {
  std::vector<int32_t> v;
  for (nb::handle h : seq) v.push_back(nb::cast<int32_t>(h));
  return v;
}

Array IntArray(const std::vector<int32_t>& v) {
  std::unique_ptr<uint8_t[]> buf(new uint8_t[std::max<size_t>(1, v.size() * 4)]);
  if (!v.empty()) std::memcpy(buf.get(), v.data(), v.size() * 4);
  return OwnedArray(std::move(buf), {v.size()}, nb::dtype<int32_t>());
}

nb::dict TensorDict(const mqkv::TensorInfo& t) {
  nb::dict d;
  d["layer"] = t.layer;
  d["kind"] = mqkv::KindName(t.kind);
  d["n_tokens"] = t.n_tokens;
  d["n_heads"] = t.n_heads;
  d["head_dim"] = t.head_dim;
  d["codec"] = t.codec;
  d["first_block"] = t.first_block;
  d["n_blocks"] = t.n_blocks;
  d["source_dtype"] = t.source_dtype;
  d["positions"] = IntArray(t.positions);
  return d;
}

// The snapshot and its file mapping, shared by every zero-copy array taken from it.
struct PySnapshot {
  std::shared_ptr<const mqkv::Snapshot> s;

  const mqkv::Snapshot& get() const {
    if (!s) Raise(mqkv::InvalidArgument("the snapshot is closed"));
    return *s;
  }

  void CheckRows(size_t tensor, uint32_t r0, uint32_t r1) const {
    const auto& ts = get().tensors();
    if (tensor >= ts.size()) Raise(mqkv::OutOfRange("tensor " + std::to_string(tensor) + " of " + std::to_string(ts.size())));
    if (r0 > r1 || r1 > ts[tensor].n_tokens)
      Raise(mqkv::Status(mqkv::OutOfRange("rows " + std::to_string(r0) + ":" + std::to_string(r1) + " outside the tensor's " +
                                          std::to_string(ts[tensor].n_tokens) + " rows")).WithFile(get().path()));
  }

  // Rows [r0, r1) as an array [rows, heads, head_dim]. Zero-copy (a read-only view into the
  // mapping, keeping the snapshot alive) when the rows lie in one uncompressed raw block stored
  // in the asked type and the file is in memory; a decoded copy otherwise.
  std::pair<nb::object, bool> Decode(size_t tensor, uint32_t r0, uint32_t r1, const std::string& dtype_name, bool allow_view,
                                const std::string& backend_name, unsigned threads) const {
    const mqkv::Snapshot& snap = get();
    CheckRows(tensor, r0, r1);
    const mqkv::DType dt = ParseDType(dtype_name);
    const mqkv::Backend backend = Take(mqkv::ParseBackend(backend_name));
    const mqkv::TensorInfo& t = snap.tensors()[tensor];
    const size_t row_elems = size_t(t.n_heads) * t.head_dim;
    std::vector<size_t> shape = {size_t(r1 - r0), t.n_heads, t.head_dim};
    if (allow_view && r1 > r0) {
      // The one block that holds every asked row, if there is one.
      const auto& blocks = snap.blocks();
      for (uint32_t b = t.first_block; b < t.first_block + t.n_blocks; ++b) {
        const mqkv::BlockInfo& bi = blocks[b];
        if (r0 < bi.token_begin || r0 >= bi.token_begin + bi.n_tokens) continue;
        if (r1 > bi.token_begin + bi.n_tokens || snap.BlockBytes(b) == nullptr) break;
        mqkv::BlockData data;
        {
          nb::gil_scoped_release unlock;
          data = Take(snap.ReadBlock(b));
        }
        const mqkv::BlockHeader& h = *data.view.header;
        const auto codec = mqkv::CodecId(h.codec);
        const bool same = (codec == mqkv::CodecId::kF32 && dt == mqkv::DType::kF32) ||
                          (codec == mqkv::CodecId::kF16 && dt == mqkv::DType::kF16) ||
                          (codec == mqkv::CodecId::kBF16 && dt == mqkv::DType::kBF16);
        if (!same || !data.owned.empty()) break;
        const uint8_t* p = data.view.payload + h.parts[mqkv::kPartCodes].offset +
                           uint64_t(r0 - bi.token_begin) * row_elems * mqkv::DTypeSize(dt);
        // The owner keeps the Snapshot (and so the mapping) alive as long as the array lives.
        auto* keep = new std::shared_ptr<const mqkv::Snapshot>(s);
        nb::capsule owner(keep, [](void* q) noexcept { delete static_cast<std::shared_ptr<const mqkv::Snapshot>*>(q); });
        nb::ndarray<nb::numpy, const uint8_t> view(p, shape.size(), shape.data(), owner, nullptr, NumpyDType(dt));
        return {nb::cast(view), true};
      }
    }
    const size_t bytes = (r1 - r0) * row_elems * mqkv::DTypeSize(dt);
    std::unique_ptr<uint8_t[]> buf(new uint8_t[std::max<size_t>(1, bytes)]);
    if (r1 > r0) {
      nb::gil_scoped_release unlock;
      Check(snap.Decode(tensor, r0, r1, dt, buf.get(), backend, threads));
    }
    return {nb::cast(OwnedArray(std::move(buf), shape, NumpyDType(dt))), false};
  }
};

// A whole KvSet (fp32) for conversions and engine states.
struct PyKvSet {
  mqkv::KvSet set;
};

mqkv::TensorDesc MakeDesc(uint32_t layer, const std::string& kind, const F32In& a, const nb::object& positions,
                          const std::string& source_dtype) {
  mqkv::TensorDesc d;
  d.layer = layer;
  d.kind = ParseKind(kind);
  if (a.shape(0) > UINT32_MAX || a.shape(1) > UINT16_MAX || a.shape(2) > UINT16_MAX)
    Raise(mqkv::InvalidArgument("array shape too large for a tensor [tokens, heads, head_dim]"));
  d.n_tokens = uint32_t(a.shape(0));
  d.n_heads = uint32_t(a.shape(1));
  d.head_dim = uint32_t(a.shape(2));
  if (!positions.is_none()) d.positions = ToInts(positions);
  d.source_dtype = source_dtype;
  return d;
}

struct PyWriter {
  std::unique_ptr<mqkv::Writer> w;
  mqkv::Writer& get() {
    if (!w) Raise(mqkv::InvalidArgument("the writer is finished or abandoned"));
    return *w;
  }
};

mqkv::ConvertOptions MakeConvertOptions(const nb::kwargs& kw) {
  mqkv::ConvertOptions o;
  for (auto [k, v] : kw) {
    const std::string key = nb::cast<std::string>(k);
    if (v.is_none()) continue;
    if (key == "src_format") o.from = nb::cast<std::string>(v);
    else if (key == "dst_format") o.to = nb::cast<std::string>(v);
    else if (key == "codec") o.codec = nb::cast<std::string>(v);
    else if (key == "k_codec") o.k_codec = nb::cast<std::string>(v);
    else if (key == "v_codec") o.v_codec = nb::cast<std::string>(v);
    else if (key == "tokens") o.tokens = nb::cast<std::pair<uint32_t, uint32_t>>(v);
    else if (key == "zstd") o.zstd = nb::cast<int>(v);
    else if (key == "max_block_tokens") o.max_block_tokens = nb::cast<uint32_t>(v);
    else if (key == "llama_type_k") o.llama_type_k = nb::cast<std::string>(v);
    else if (key == "llama_type_v") o.llama_type_v = nb::cast<std::string>(v);
    else if (key == "head_dim_k") o.head_dim_k = nb::cast<uint32_t>(v);
    else if (key == "head_dim_v") o.head_dim_v = nb::cast<uint32_t>(v);
    else if (key == "dtype") o.dtype = nb::cast<std::string>(v);
    else if (key == "threads") o.threads = nb::cast<unsigned>(v);
    else if (key == "fsync") o.fsync = nb::cast<bool>(v);
    else if (key == "target_bits") o.target_bits = nb::cast<double>(v);
    else if (key == "rate_levels") o.rate_levels = nb::cast<std::vector<uint16_t>>(v);
    else if (key == "rate_distortion") o.rate_distortion = nb::cast<std::string>(v);
    else if (key == "rate_queries") o.rate_queries = nb::cast<std::string>(v);
    else if (key == "rope_type") o.rope_type = nb::cast<std::string>(v);
    else if (key == "rope_base") o.rope_base = nb::cast<float>(v);
    else Raise(mqkv::InvalidArgument("unknown option \"" + key + "\""));
  }
  return o;
}

nb::dict SummaryDict(const mqkv::ConvertSummary& s) {
  nb::dict d;
  d["src_format"] = mqkv::FileFormatName(s.from);
  d["dst_format"] = mqkv::FileFormatName(s.to);
  d["tensors"] = s.tensors;
  d["layers"] = s.layers;
  d["tokens"] = s.tokens;
  d["k_codec"] = s.k_codec.empty() ? nb::none() : nb::object(nb::str(s.k_codec.c_str()));
  d["v_codec"] = s.v_codec.empty() ? nb::none() : nb::object(nb::str(s.v_codec.c_str()));
  return d;
}

mqkv::FileFormat Format(const std::string& name) { return Take(mqkv::ParseFileFormat(name)); }

nb::bytes ToBytes(const std::vector<uint8_t>& v) { return nb::bytes(reinterpret_cast<const char*>(v.data()), v.size()); }

}  // namespace

NB_MODULE(_mqkv, m) {
  m.doc() = "The compiled layer of mqkv (use the mqkv package, not this module).";
  nb::register_exception_translator(Translate);
  m.attr("__version__") = MQKV_VERSION_STRING;
  m.attr("FORMAT_VERSION") = nb::make_tuple(mqkv::kFormatMajor, mqkv::kFormatMinor);
  m.attr("LLAMA_PINNED") = mqkv::kLlamaPinned;

  // --- model facts --------------------------------------------------------------------------
  nb::class_<mqkv::ModelInfo>(m, "Model", "What a snapshot records about the model and the cached prefix.")
      .def(nb::init<>())
      .def_rw("architecture", &mqkv::ModelInfo::architecture)
      .def_rw("n_layer", &mqkv::ModelInfo::n_layer)
      .def_rw("n_head", &mqkv::ModelInfo::n_head)
      .def_rw("n_head_kv", &mqkv::ModelInfo::n_head_kv)
      .def_rw("head_dim_k", &mqkv::ModelInfo::head_dim_k)
      .def_rw("head_dim_v", &mqkv::ModelInfo::head_dim_v)
      .def_rw("rope_type", &mqkv::ModelInfo::rope_type)
      .def_rw("rope_base", &mqkv::ModelInfo::rope_base)
      .def_prop_rw(
          "k_rope", [](const mqkv::ModelInfo& mi) { return std::string(mqkv::KRopeName(mi.k_rope)); },
          [](mqkv::ModelInfo& mi, const std::string& v) {
            if (v == "unknown") mi.k_rope = mqkv::KRope::kUnknown;
            else if (v == "pre") mi.k_rope = mqkv::KRope::kPreRope;
            else if (v == "post") mi.k_rope = mqkv::KRope::kPostRope;
            else Raise(mqkv::InvalidArgument("k_rope \"" + v + "\": expected unknown, pre or post"));
          })
      .def_rw("source_engine", &mqkv::ModelInfo::source_engine)
      .def_rw("source_engine_version", &mqkv::ModelInfo::source_engine_version)
      .def_rw("source_format", &mqkv::ModelInfo::source_format)
      .def_prop_rw(
          "tokens", [](const mqkv::ModelInfo& mi) { return nb::cast(IntArray(mi.tokens)); },
          [](mqkv::ModelInfo& mi, nb::handle v) { mi.tokens = ToInts(v); })
      .def_prop_rw(
          "positions", [](const mqkv::ModelInfo& mi) { return nb::cast(IntArray(mi.positions)); },
          [](mqkv::ModelInfo& mi, nb::handle v) { mi.positions = ToInts(v); })
      .def_prop_rw(
          "seq_ids", [](const mqkv::ModelInfo& mi) { return nb::cast(IntArray(mi.seq_ids)); },
          [](mqkv::ModelInfo& mi, nb::handle v) { mi.seq_ids = ToInts(v); })
      .def_prop_rw(
          "metadata",
          [](const mqkv::ModelInfo& mi) {
            nb::dict d;
            for (const auto& [k, v] : mi.metadata) d[k.c_str()] = v;
            return d;
          },
          [](mqkv::ModelInfo& mi, const nb::dict& d) {
            mi.metadata.clear();
            for (auto [k, v] : d) mi.metadata.emplace_back(nb::cast<std::string>(k), nb::cast<std::string>(v));
          })
      .def("__eq__", [](const mqkv::ModelInfo& a, const mqkv::ModelInfo& b) { return a == b; });

  // --- reading ------------------------------------------------------------------------------
  nb::class_<PySnapshot>(m, "Snapshot")
      .def_static(
          "open",
          [](const std::string& path, bool verify) {
            mqkv::OpenOptions o;
            o.verify_all_blocks = verify;
            std::unique_ptr<mqkv::Snapshot> s;
            {
              nb::gil_scoped_release unlock;
              s = Take(mqkv::Snapshot::Open(path, o));
            }
            return PySnapshot{std::shared_ptr<const mqkv::Snapshot>(std::move(s))};
          },
          "path"_a, "verify"_a = false)
      .def("close", [](PySnapshot& p) { p.s.reset(); })
      .def_prop_ro("closed", [](const PySnapshot& p) { return !p.s; })
      .def_prop_ro("path", [](const PySnapshot& p) { return p.get().path(); })
      .def_prop_ro("file_bytes", [](const PySnapshot& p) { return p.get().file_bytes(); })
      .def_prop_ro("version", [](const PySnapshot& p) { return nb::make_tuple(p.get().version_major(), p.get().version_minor()); })
      .def_prop_ro("model", [](const PySnapshot& p) { return p.get().model(); })
      .def("tensor_infos",
           [](const PySnapshot& p) {
             nb::list l;
             for (const auto& t : p.get().tensors()) l.append(TensorDict(t));
             return l;
           })
      .def("stored_bytes",
           [](const PySnapshot& p) {
             mqkv::SnapshotAccounting a;
             {
               nb::gil_scoped_release unlock;
               a = Take(mqkv::AccountSnapshot(p.get()));
             }
             std::vector<uint64_t> v;
             for (const auto& t : a.tensors) v.push_back(t.stored_bytes);
             return v;
           })
      .def("find", [](const PySnapshot& p, uint32_t layer, const std::string& kind) {
        auto i = p.get().FindTensor(layer, ParseKind(kind));
        return i ? nb::object(nb::int_(*i)) : nb::none();
      })
      .def("decode", &PySnapshot::Decode, "tensor"_a, "row_begin"_a, "row_end"_a, "dtype"_a, "allow_view"_a, "backend"_a,
           "threads"_a = 1)
      .def("io_stats", [](const PySnapshot& p) {
        const mqkv::IoStats st = p.get().io_stats();
        nb::dict d;
        d["requests"] = st.requests;
        d["bytes_fetched"] = st.bytes_fetched;
        d["retries"] = st.retries;
        return d;
      });

  // --- writing ------------------------------------------------------------------------------
  nb::class_<PyWriter>(m, "Writer")
      .def(
          "__init__",
          [](PyWriter* self, const std::string& path, int zstd, uint32_t max_block_tokens, bool fsync) {
            mqkv::WriterOptions o;
            o.zstd_level = zstd;
            o.max_block_tokens = max_block_tokens;
            o.fsync = fsync;
            new (self) PyWriter{Take(mqkv::Writer::Create(path, o))};
          },
          "path"_a, "zstd"_a = 0, "max_block_tokens"_a = 0, "fsync"_a = true)
      .def("set_model", [](PyWriter& w, const mqkv::ModelInfo& mi) { w.get().SetModel(mi); })
      .def(
          "add",
          [](PyWriter& w, uint32_t layer, const std::string& kind, F32In a, const std::string& codec, nb::object positions,
             const std::string& source_dtype) {
            const mqkv::TensorDesc d = MakeDesc(layer, kind, a, positions, source_dtype);
            const mqkv::CodecSpec spec = ParseSpec(codec);
            mqkv::Writer& wr = w.get();
            nb::gil_scoped_release unlock;
            Check(wr.AddTensor(d, a.data(), spec));
          },
          "layer"_a, "kind"_a, "array"_a, "codec"_a, "positions"_a = nb::none(), "source_dtype"_a = "")
      .def("finish",
           [](PyWriter& w) {
             mqkv::Writer& wr = w.get();
             {
               nb::gil_scoped_release unlock;
               Check(wr.Finish());
             }
             w.w.reset();
           })
      .def("abandon", [](PyWriter& w) { w.w.reset(); })
      .def_prop_ro("path", [](PyWriter& w) { return w.get().path(); });

  // --- whole snapshots in fp32 ----------------------------------------------------------------
  nb::class_<PyKvSet>(m, "KvSet")
      .def(nb::init<>())
      .def_static(
          "read",
          [](const std::string& path, const std::string& format, std::optional<std::pair<uint32_t, uint32_t>> tokens, unsigned threads) {
            const mqkv::FileFormat f = format.empty() ? Take(mqkv::DetectFileFormat(path)) : Format(format);
            mqkv::ReadOptions o;
            o.tokens = tokens;
            o.threads = threads;
            nb::gil_scoped_release unlock;
            return PyKvSet{Take(mqkv::ReadKvSet(path, f, o))};
          },
          "path"_a, "format"_a = "", "tokens"_a = nb::none(), "threads"_a = 0)
      .def_static(
          "from_llama_state",
          [](nb::bytes data, const std::string& format, uint32_t head_dim_k, uint32_t head_dim_v, const std::string& name) {
            mqkv::LlamaReadOptions o{head_dim_k, head_dim_v ? head_dim_v : head_dim_k};
            const mqkv::FileFormat f = Format(format);
            const auto* p = static_cast<const uint8_t*>(data.data());
            const size_t n = data.size();
            nb::gil_scoped_release unlock;
            return PyKvSet{Take(mqkv::ParseLlamaState(p, n, f, o, name))};
          },
          "data"_a, "format"_a = "llama-seq-state", "head_dim_k"_a = 0, "head_dim_v"_a = 0, "name"_a = "<llama state>")
      .def_prop_rw(
          "model", [](const PyKvSet& k) { return k.set.model; }, [](PyKvSet& k, const mqkv::ModelInfo& mi) { k.set.model = mi; })
      .def("tensor_infos",
           [](const PyKvSet& k) {
             nb::list l;
             for (const auto& t : k.set.tensors) {
               mqkv::TensorInfo ti;
               static_cast<mqkv::TensorDesc&>(ti) = t.desc;
               l.append(TensorDict(ti));
             }
             return l;
           })
      .def("array",
           [](const PyKvSet& k, size_t i) {
             if (i >= k.set.tensors.size()) Raise(mqkv::OutOfRange("tensor " + std::to_string(i)));
             const mqkv::KvTensor& t = k.set.tensors[i];
             std::unique_ptr<uint8_t[]> buf(new uint8_t[std::max<size_t>(1, t.data.size() * 4)]);
             std::memcpy(buf.get(), t.data.data(), t.data.size() * 4);
             return OwnedArray(std::move(buf), {t.desc.n_tokens, t.desc.n_heads, t.desc.head_dim}, nb::dtype<float>());
           })
      .def(
          "add",
          [](PyKvSet& k, uint32_t layer, const std::string& kind, F32In a, nb::object positions, const std::string& source_dtype) {
            mqkv::KvTensor t;
            t.desc = MakeDesc(layer, kind, a, positions, source_dtype);
            t.data.assign(a.data(), a.data() + a.size());
            k.set.tensors.push_back(std::move(t));
          },
          "layer"_a, "kind"_a, "array"_a, "positions"_a = nb::none(), "source_dtype"_a = "")
      .def(
          "write",
          [](const PyKvSet& k, const std::string& path, const std::string& format, const std::string& k_codec, const std::string& v_codec,
             int zstd, uint32_t max_block_tokens, const std::string& dtype, const std::string& llama_type_k,
             const std::string& llama_type_v, unsigned threads, bool fsync) {
            const mqkv::FileFormat f = format.empty() ? Take(mqkv::Result<mqkv::FileFormat>([&]() -> mqkv::Result<mqkv::FileFormat> {
              if (auto e = mqkv::FileFormatFromExtension(path)) return *e;
              return mqkv::Status(mqkv::InvalidArgument("cannot tell the output format from the extension; pass format=")).WithFile(path);
            }()))
                                                      : Format(format);
            mqkv::WriteOptions o;
            o.k_codec = k_codec.empty() ? mqkv::LosslessCodec(k.set, mqkv::Kind::kK) : ParseSpec(k_codec);
            o.v_codec = v_codec.empty() ? mqkv::LosslessCodec(k.set, mqkv::Kind::kV) : ParseSpec(v_codec);
            o.writer.zstd_level = zstd;
            o.writer.max_block_tokens = max_block_tokens;
            o.writer.fsync = fsync;
            o.dtype = dtype;
            o.llama_type_k = llama_type_k;
            o.llama_type_v = llama_type_v;
            o.threads = threads;
            nb::gil_scoped_release unlock;
            Check(mqkv::WriteKvSet(k.set, path, f, o));
          },
          "path"_a, "format"_a = "", "k_codec"_a = "", "v_codec"_a = "", "zstd"_a = 0, "max_block_tokens"_a = 0, "dtype"_a = "",
          "llama_type_k"_a = "", "llama_type_v"_a = "", "threads"_a = 0, "fsync"_a = true)
      .def(
          "to_llama_state",
          [](const PyKvSet& k, const std::string& format, const std::string& llama_type_k, const std::string& llama_type_v) {
            mqkv::WriteOptions o;
            o.llama_type_k = llama_type_k;
            o.llama_type_v = llama_type_v;
            const mqkv::FileFormat f = Format(format);
            std::vector<uint8_t> bytes;
            {
              nb::gil_scoped_release unlock;
              bytes = Take(mqkv::SerializeLlamaState(k.set, f, o));
            }
            return ToBytes(bytes);
          },
          "format"_a = "llama-seq-state", "llama_type_k"_a = "", "llama_type_v"_a = "")
      .def("slice", [](PyKvSet& k, uint32_t a, uint32_t b) { Check(mqkv::SliceTokens(&k.set, a, b)); });

  // --- conversions, verification, quantization ------------------------------------------------
  m.def(
      "convert",
      [](const std::string& src, const std::string& dst, nb::kwargs kw) {
        const mqkv::ConvertOptions o = MakeConvertOptions(kw);
        mqkv::ConvertSummary s;
        {
          nb::gil_scoped_release unlock;
          s = Take(mqkv::Convert(src, dst, o));
        }
        return SummaryDict(s);
      },
      "src"_a, "dst"_a, "kw"_a);

  m.def(
      "verify_json",
      [](const std::string& path, const std::string& reference, const std::string& reference_format, std::vector<double> positions,
         const std::string& backends, unsigned threads, const std::string& compare) {
        const std::vector<mqkv::Backend> bs = Take(mqkv::ParseBackendList(backends));
        const mqkv::CompareRows cmp = Take(mqkv::ParseCompareRows(compare));
        nb::gil_scoped_release unlock;
        auto snap = Take(mqkv::Snapshot::Open(path));
        std::optional<mqkv::KvSet> ref;
        std::string ref_fmt;
        if (!reference.empty()) {
          const mqkv::FileFormat f = reference_format.empty() ? Take(mqkv::DetectFileFormat(reference)) : Format(reference_format);
          ref_fmt = mqkv::FileFormatName(f);
          mqkv::ReadOptions ro;
          ro.threads = threads;
          ref = Take(mqkv::ReadKvSet(reference, f, ro));
        }
        mqkv::VerifyOptions vo;
        vo.backends = bs;
        vo.compare = cmp;
        vo.threads = threads;
        vo.reference = ref ? &*ref : nullptr;
        vo.reference_name = reference;
        if (!positions.empty()) vo.fidelity.positions = positions;
        const mqkv::VerifyReport r = Take(mqkv::VerifySnapshot(*snap, vo));
        return mqkv::VerifyReportJson(r, path, vo, ref_fmt);
      },
      "path"_a, "reference"_a, "reference_format"_a, "positions"_a, "backends"_a, "threads"_a = 0, "compare"_a = "sample");

  m.def(
      "quantize",
      [](F32In a, const std::string& codec, const std::string& dtype_name, const std::string& kind) {
        const mqkv::TensorDesc d = MakeDesc(0, kind, a, nb::none(), "");
        const mqkv::CodecSpec spec = ParseSpec(codec);
        const mqkv::DType dt = ParseDType(dtype_name);
        const size_t bytes = a.size() * mqkv::DTypeSize(dt);
        std::unique_ptr<uint8_t[]> buf(new uint8_t[std::max<size_t>(1, bytes)]);
        mqkv::TensorAccounting acc;
        {
          nb::gil_scoped_release unlock;
          acc = Take(mqkv::Quantize(d, a.data(), spec, dt, buf.get()));
        }
        nb::dict info;
        info["codec"] = acc.codec;
        info["values"] = acc.values;
        info["blocks"] = acc.n_blocks;
        info["stored_bytes"] = acc.stored_bytes;
        info["bits_per_value"] = acc.actual_bits_per_dim();
        info["modeled_bits_per_value"] = acc.modeled_bits_per_dim();
        nb::dict br;
        const mqkv::Breakdown& b = acc.breakdown;
        br["codes"] = b.codes;
        br["group_meta"] = b.group_meta;
        br["shared_ranges"] = b.shared_ranges;
        br["fp16_rows"] = b.fp16_rows;
        br["codebook"] = b.codebook;
        br["block_headers"] = b.block_headers;
        br["padding"] = b.padding;
        info["breakdown"] = br;
        return nb::make_tuple(OwnedArray(std::move(buf), {a.shape(0), a.shape(1), a.shape(2)}, NumpyDType(dt)), info);
      },
      "array"_a, "codec"_a, "dtype"_a, "kind"_a);

  m.def(
      "llama_state_from_snapshot",
      [](const std::string& path, const std::string& format, const std::string& llama_type_k, const std::string& llama_type_v,
         unsigned threads, nb::object buffer, const std::string& rope_type) {
        mqkv::WriteOptions o;
        o.llama_type_k = llama_type_k;
        o.llama_type_v = llama_type_v;
        o.threads = threads;
        o.llama_rope_type = rope_type;
        const mqkv::FileFormat f = Format(format);
        std::unique_ptr<mqkv::Snapshot> snap;
        uint64_t size = 0;
        {
          nb::gil_scoped_release unlock;
          snap = Take(mqkv::Snapshot::Open(path));
          size = Take(mqkv::LlamaStateSize(*snap, f, o));
        }
        // The state goes into `buffer` when it is a writable uint8 array large enough (a restore
        // buffer kept across restores touches no fresh pages), else into a new numpy array
        // (numpy's allocator asks for huge pages on a large one, which makes first touch cheap).
        using Buf = nb::ndarray<uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
        Buf arr;
        if (buffer.is_none() || !nb::try_cast(buffer, arr, false) || arr.shape(0) < size) {
          buffer = nb::module_::import_("numpy").attr("empty")(size, "dtype"_a = "uint8");
          arr = nb::cast<Buf>(buffer);
        }
        std::vector<int32_t> tokens;
        {
          nb::gil_scoped_release unlock;
          Check(mqkv::SerializeLlamaState(*snap, f, o, arr.data(), size));
          tokens = snap->model().tokens;
        }
        return nb::make_tuple(buffer, size, IntArray(tokens));
      },
      "path"_a, "format"_a = "llama-seq-state", "llama_type_k"_a = "", "llama_type_v"_a = "", "threads"_a = 0,
      "buffer"_a = nb::none(), "rope_type"_a = "");

  m.def("parse_codec", [](const std::string& text) { return ParseSpec(text).ToString(); }, "text"_a);
  m.def("codec_fields", [](const std::string& text) {
    const mqkv::CodecSpec s = ParseSpec(text);
    nb::dict d;
    d["codec"] = s.ToString().substr(0, s.ToString().find(':'));
    d["bits"] = s.bits;
    d["group"] = s.group;
    d["axis"] = s.axis == mqkv::GroupAxis::kToken ? "token" : "channel";
    d["meta_bits"] = s.meta_bits;
    d["rotation"] = s.rotation == mqkv::Rotation::kHadamard ? "hadamard" : "none";
    d["seed"] = s.seed;
    d["sinks"] = s.sinks;
    d["residual"] = s.residual;
    d["prerope"] = s.prerope;
    d["levels"] = s.levels;
    d["thresholds"] = s.thresholds;
    d["fit"] = s.fit_lloyd ? "lloyd" : "none";
    return d;
  });
  m.def("presets", &mqkv::PresetNames);
  m.def("backend_available", [](const std::string& b) { return mqkv::BackendAvailable(Take(mqkv::ParseBackend(b))); });
  m.def("simd_archs", &mqkv::SimdArchs);
  m.def("active_simd_arch", &mqkv::ActiveSimdArch);
  m.def("simd_env_warning", &mqkv::SimdEnvWarning);
}
