// mqkv <-> KvSet: decode every tensor to fp32, or encode with the K/V codec specs.
#include <cstring>

#include "../format/container.h"
#include "adapters.h"
#include "interop.h"
#include "util/parallel.h"

namespace mqkv::adapters {
namespace {

bool Sniff(const uint8_t* h, size_t n) { return n >= 8 && std::memcmp(h, format::kFileMagic, 8) == 0; }

Result<KvSet> Read(const std::string& path, FileFormat) { return ReadMqkv(path, 1); }

}  // namespace

Result<KvSet> ReadMqkv(const std::string& path, unsigned threads) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<Snapshot> s, Snapshot::Open(path));
  return DecodeSnapshot(*s, threads);
}

namespace {

// Rows [begin, end) exist in every K/V tensor of the snapshot.
Status CheckSnapshotRows(const Snapshot& s, uint32_t begin, uint32_t end) {
  MQKV_RETURN_IF_ERROR(CheckTokenRange(begin, end, UINT32_MAX));
  for (const TensorInfo& t : s.tensors())
    if (t.kind != Kind::kQ) MQKV_RETURN_IF_ERROR(CheckTokenRange(begin, end, t.n_tokens));
  return Status::OK();
}

}  // namespace

Result<KvSet> ReadMqkvRows(const std::string& path, uint32_t begin, uint32_t end) {
  // The streaming reader's tensors, loaded (each decodes only the blocks holding its rows).
  MQKV_ASSIGN_OR_RETURN(KvSet set, ReadMqkvLazy(path, std::make_pair(begin, end)));
  MQKV_RETURN_IF_ERROR(Materialize(&set));
  return set;
}

Result<KvSet> ReadMqkvLazy(const std::string& path, const std::optional<std::pair<uint32_t, uint32_t>>& tokens) {
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<Snapshot> opened, Snapshot::Open(path));
  std::shared_ptr<const Snapshot> s(std::move(opened));
  const uint32_t begin = tokens ? tokens->first : 0;
  if (tokens) MQKV_RETURN_IF_ERROR(CheckSnapshotRows(*s, tokens->first, tokens->second));
  KvSet set;
  set.model = s->model();
  set.backing = s;
  for (size_t i = 0; i < s->tensors().size(); ++i) {
    const TensorInfo& t = s->tensors()[i];
    KvTensor kt;
    kt.desc = t;
    if (t.kind == Kind::kQ) {
      MQKV_ASSIGN_OR_RETURN(kt.data, s->DecodeF32(i, 0, t.n_tokens));
    } else {
      const uint32_t end = tokens ? tokens->second : t.n_tokens;
      kt.desc.n_tokens = end - begin;
      // The snapshot is kept alive by set.backing; a raw f16/bf16 tensor's values are exact in it.
      const Snapshot* snap = s.get();
      kt.load = [snap, i, begin, end]() {
        auto rows = snap->DecodeF32(i, begin, end);
        const TensorInfo& ti = snap->tensors()[i];
        snap->ReleaseBlocks(ti.first_block, ti.first_block + ti.n_blocks);
        return rows;
      };
      if (t.codec == "f16" || t.codec == "bf16") kt.exact_in = t.codec;
      // f16 output decoded as f16: by the spec the same bits as the f32 rows rounded to nearest
      // even; a value that is not finite in f16 (an overflow, or a NaN whose payload the fp32
      // path would quiet) sends the caller to the fp32 path.
      kt.load_f16_ranges = true;
      for (uint32_t b = t.first_block; b < t.first_block + t.n_blocks && kt.load_f16_ranges; ++b) {
        auto h = snap->BlockHeaderAt(b);
        kt.load_f16_ranges = snap->BlockBytes(b) != nullptr && h.ok() && (*h)->compression == 0;
      }
      kt.load_f16 = [snap, i, begin, end](uint32_t r0, uint32_t r1, uint16_t* dst) -> Result<bool> {
        const TensorInfo& ti = snap->tensors()[i];
        if (r0 > r1 || r1 > end - begin) return Internal("f16 row range beyond the tensor");
        Status st = snap->Decode(i, begin + r0, begin + r1, DType::kF16, dst);
        if (!st.ok() || r1 == end - begin) snap->ReleaseBlocks(ti.first_block, ti.first_block + ti.n_blocks);
        MQKV_RETURN_IF_ERROR(st);
        return interop::AllFiniteF16(dst, uint64_t(r1 - r0) * ti.n_heads * ti.head_dim);
      };
    }
    set.tensors.push_back(std::move(kt));
  }
  if (tokens) MQKV_RETURN_IF_ERROR(SliceQueriesAndPrefix(&set, tokens->first, tokens->second));
  return set;
}

namespace {

// The set's tensors into `w`, tensor i with specs[i] (Q tensors: f32 whatever specs says).
Status AddTensorsTo(Writer& w, const KvSet& set, const WriteOptions& opts, const std::vector<CodecSpec>& specs) {
  std::vector<Writer::TensorInput> in;
  for (size_t i = 0; i < set.tensors.size(); ++i) {
    const KvTensor& t = set.tensors[i];
    // Queries are reference data for fidelity measurement: always stored losslessly (f32).
    const CodecSpec spec = t.desc.kind == Kind::kQ ? CodecSpec::Parse("f32").value() : specs[i];
    Writer::TensorInput ti{&t.desc, t.lazy() ? nullptr : t.data.data(), spec};
    if (t.lazy()) {  // loaded by the encoding thread, dropped once encoded
      ti.load = [&t]() -> Result<std::vector<float>> {
        std::vector<float> rows;
        MQKV_RETURN_IF_ERROR(RowsOf(t, &rows).status());
        return rows;
      };
      if (t.load_into) ti.load_into = [&t](float* dst) { return t.load_into(dst); };
    }
    in.push_back(std::move(ti));
  }
  return w.AddTensors(in, opts.threads);
}

Status Write(const KvSet& set, const std::string& path, FileFormat, const WriteOptions& opts) {
  if (opts.target_bits != 0) return WriteMqkvAtRate(set, path, opts, AddTensorsTo);
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<Writer> w, Writer::Create(path, opts.writer));
  w->SetModel(set.model);
  std::vector<CodecSpec> specs;
  for (const KvTensor& t : set.tensors) specs.push_back(t.desc.kind == Kind::kV ? opts.v_codec : opts.k_codec);
  MQKV_RETURN_IF_ERROR(AddTensorsTo(*w, set, opts, specs));
  return w->Finish();
}

}  // namespace

const Adapter& MqkvAdapter() {
  static const Adapter a{FileFormat::kMqkv, Sniff, Read, Write};
  return a;
}

}  // namespace mqkv::adapters

namespace mqkv {

Result<KvSet> DecodeSnapshot(const Snapshot& s, unsigned threads) {
  KvSet set;
  set.model = s.model();
  set.tensors.resize(s.tensors().size());
  // The Snapshot is safe to decode from several threads; each tensor is one task.
  MQKV_RETURN_IF_ERROR(util::ParallelFor(set.tensors.size(), threads, [&](size_t i, unsigned) -> Status {
    const TensorInfo& t = s.tensors()[i];
    set.tensors[i].desc = t;
    MQKV_ASSIGN_OR_RETURN(set.tensors[i].data, s.DecodeF32(i, 0, t.n_tokens));
    return Status::OK();
  }));
  return set;
}

}  // namespace mqkv
