// Rate control for mqkv output (WriteOptions::target_bits, mqconvert --target-bits): each K/V
// tensor's level count chosen so the file lands at or below a measured bits/dim.
//
// 1. Every candidate level count is measured on every K/V tensor with the real writer
//    (measure::Quantize: the tensor's stored bytes, block headers and alignment included, and
//    its decoded values), giving a (bytes, distortion) point per candidate. Distortion is the
//    tensor's normalized squared error sum((x' - x)^2) / sum(x^2).
// 2. Greedy marginal allocation on each tensor's lower convex hull (Shoham-Gersho / the
//    KVTuner-style per-layer search): every tensor starts at its cheapest point, then the step
//    with the largest distortion saved per byte is taken while it fits the budget. Summed
//    distortion over tensors is what is minimized, so each layer's K and V weigh the same.
// 3. The file is built in memory and measured as mqverify does (file bytes less the Q tensors,
//    over the K/V values); if the index and headers took more than reserved, the budget drops
//    by the excess and step 2 runs again (no new encoding). The bytes are then written to the
//    output in one atomic write.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <queue>

#include "../io/io.h"
#include "adapters.h"
#include "mqkv/measure.h"
#include "util/parallel.h"

namespace mqkv::adapters {
namespace {

struct Point {
  uint16_t levels;
  uint64_t bytes;
  double distortion;
};

// The points of one tensor that can be optimal for some rate: cheapest first, each next one
// costs more bytes, saves distortion, and saves less per byte than the step before.
std::vector<Point> LowerHull(std::vector<Point> pts) {
  std::sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) {
    return a.bytes != b.bytes ? a.bytes < b.bytes : a.distortion < b.distortion;
  });
  std::vector<Point> hull;
  for (const Point& p : pts) {
    if (!hull.empty() && p.distortion >= hull.back().distortion) continue;  // dominated
    while (hull.size() >= 2) {
      const Point& a = hull[hull.size() - 2];
      const Point& b = hull.back();
      // b lies on or above the segment a-p: drop it.
      const double cross = (b.distortion - a.distortion) * double(p.bytes - a.bytes) - (p.distortion - a.distortion) * double(b.bytes - a.bytes);
      if (cross >= 0) hull.pop_back();
      else break;
    }
    hull.push_back(p);
  }
  return hull;
}

std::string Num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

std::string LevelList(const std::vector<uint16_t>& levels) {
  std::string s;
  for (uint16_t l : levels) {
    if (!s.empty()) s += ',';
    s += std::to_string(l);
  }
  return s;
}

// K/V tensors of the set with their per-candidate points.
struct Candidates {
  bool queries = false;                     // some layer was measured with the set's Q tensors
  std::vector<size_t> tensors;              // indices into set.tensors (K and V only)
  std::vector<std::vector<Point>> hulls;    // per entry of `tensors`
  uint64_t values = 0;                      // K+V values
};

// Distortion of `decoded` (one tensor of a layer, the layer's other tensor exact) against the
// reference pair. nmse: sum((x' - x)^2) / sum(x^2). attention: sum over the layer's queries of
// (1 - cosine) of the attention output; the queries are the set's own Q tensor of that layer
// when it has one (a reference dump) and rate_queries is not "proxy", else the reference key at kRatePositions fractions of the
// prefix (spec/MEASURE.md "Queries"). With the set's queries the allocation is fitted to them:
// measure such a file with other queries (or end to end) for an unfitted number.
constexpr int kRatePositions = 16;

Result<double> Distortion(const std::string& measure, const KvSet& ref_pair, const KvSet& dec_pair, const std::vector<float>& x,
                          const std::vector<float>& y) {
  if (measure == "nmse" || dec_pair.tensors.size() < 2) {
    double err = 0, energy = 0;
    for (size_t j = 0; j < x.size(); ++j) {
      const double e = double(y[j]) - x[j];
      err += e * e, energy += double(x[j]) * x[j];
    }
    return energy > 0 ? err / energy : err;
  }
  FidelityOptions fo;
  fo.positions.clear();
  for (int i = 1; i <= kRatePositions; ++i) fo.positions.push_back(double(i) / kRatePositions);
  MQKV_ASSIGN_OR_RETURN(Fidelity f, MeasureFidelity(dec_pair, ref_pair, fo));
  return double(f.attention.cases) - f.attention.out_cos_sum;
}

Result<Candidates> Measure(const KvSet& set, const WriteOptions& opts, const std::vector<uint16_t>& levels) {
  Candidates c;
  // One task per layer: its K and V are measured together (attention needs both).
  std::map<uint32_t, std::vector<size_t>> layers;  // layer -> entries of c.tensors
  for (size_t i = 0; i < set.tensors.size(); ++i)
    if (set.tensors[i].desc.kind != Kind::kQ) {
      const TensorDesc& d = set.tensors[i].desc;
      layers[d.layer].push_back(c.tensors.size());
      c.tensors.push_back(i);
      c.values += uint64_t(d.n_tokens) * d.n_heads * d.head_dim;
    }
  std::vector<std::vector<size_t>> tasks;
  for (auto& [layer, entries] : layers) tasks.push_back(entries);
  c.hulls.resize(c.tensors.size());
  WriterOptions wo = opts.writer;
  wo.fsync = false;
  const std::string measure = opts.rate_distortion.empty() ? "attention" : opts.rate_distortion;
  std::atomic<bool> any_queries{false};
  MQKV_RETURN_IF_ERROR(util::ParallelFor(tasks.size(), opts.threads, [&](size_t task, unsigned) -> Status {
    const std::vector<size_t>& entries = tasks[task];
    bool with_queries = false;
    // The layer's reference pair (K, V) and a copy in which one tensor is replaced per candidate.
    KvSet ref;
    for (size_t k : entries) {
      const KvTensor& t = set.tensors[c.tensors[k]];
      std::vector<float> hold;
      MQKV_ASSIGN_OR_RETURN(const std::vector<float>* rows, RowsOf(t, &hold));
      KvTensor copy;
      copy.desc = t.desc;
      copy.data = hold.empty() ? *rows : std::move(hold);
      ref.tensors.push_back(std::move(copy));
    }
    const bool pair = ref.tensors.size() == 2 && ref.Find(ref.tensors[0].desc.layer, Kind::kK) && ref.Find(ref.tensors[0].desc.layer, Kind::kV);
    if (!pair && ref.tensors.size() == 2) return InvalidArgument("layer " + std::to_string(ref.tensors[0].desc.layer) + " has two tensors of one kind");
    KvSet dec = ref;
    if (pair && opts.rate_queries != "proxy")  // the layer's queries, reference side only (MeasureFidelity prefers them)
      for (const KvTensor& t : set.tensors)
        if (t.desc.kind == Kind::kQ && t.desc.layer == ref.tensors[0].desc.layer && !t.lazy()) {
          ref.tensors.push_back(t);
          with_queries = true;
        }
    for (size_t j = 0; j < entries.size(); ++j) {
      const KvTensor& t = ref.tensors[j];
      std::vector<float>& out = dec.tensors[j].data;
      std::vector<Point> pts;
      for (uint16_t l : levels) {
        CodecSpec spec = t.desc.kind == Kind::kK ? opts.k_codec : opts.v_codec;
        spec.n_levels = l;
        MQKV_ASSIGN_OR_RETURN(TensorAccounting a, Quantize(t.desc, t.data.data(), spec, DType::kF32, out.data(), wo, &set.model));
        MQKV_ASSIGN_OR_RETURN(double d, Distortion(measure, ref, dec, t.data, out));
        pts.push_back({l, a.stored_bytes, d});
      }
      out = t.data;  // exact again while the layer's other tensor is measured
      c.hulls[entries[j]] = LowerHull(std::move(pts));
    }
    if (with_queries && measure == "attention") any_queries = true;
    return Status::OK();
  }));
  c.queries = any_queries;
  return c;
}

// Step 2: the chosen hull index per tensor within `budget` bytes (the K/V tensors' own bytes).
Result<std::vector<size_t>> Allocate(const Candidates& c, uint64_t budget, double target_bits) {
  std::vector<size_t> at(c.hulls.size(), 0);
  uint64_t used = 0;
  for (const auto& h : c.hulls) used += h[0].bytes;
  if (used > budget)
    return InvalidArgument("--target-bits " + Num(target_bits) + " is below what the cheapest candidate level count reaches (" +
                           Num(8.0 * double(used) / double(c.values)) + " bits/dim before the file's header and index)");
  using Step = std::pair<double, size_t>;  // distortion saved per byte, tensor
  std::priority_queue<Step> q;
  auto push = [&](size_t k) {
    const auto& h = c.hulls[k];
    if (at[k] + 1 >= h.size()) return;
    const Point &a = h[at[k]], &b = h[at[k] + 1];
    q.push({(a.distortion - b.distortion) / double(b.bytes - a.bytes), k});
  };
  for (size_t k = 0; k < c.hulls.size(); ++k) push(k);
  while (!q.empty()) {
    const size_t k = q.top().second;
    q.pop();
    const auto& h = c.hulls[k];
    const uint64_t extra = h[at[k] + 1].bytes - h[at[k]].bytes;
    if (used + extra > budget) continue;  // this tensor stays where it is; others may still fit
    used += extra;
    ++at[k];
    push(k);
  }
  return at;
}

}  // namespace

Status CheckRateCodecs(const WriteOptions& opts) {
  if (!(opts.target_bits > 0) || !std::isfinite(opts.target_bits))
    return InvalidArgument("--target-bits " + Num(opts.target_bits) + ": expected a positive number of bits/dim");
  for (const CodecSpec* s : {&opts.k_codec, &opts.v_codec})
    if (s->codec != CodecId::kAffine || s->entropy != Entropy::kRans)
      return InvalidArgument("--target-bits chooses the level count of entropy-coded affine codes: give --codec (or --k-codec and --v-codec) as "
                             "affine:...,entropy=rans (e.g. affine:group=64,meta=4,axis=channel,entropy=rans), not \"" + s->ToString() + "\"");
  if (!opts.rate_queries.empty() && opts.rate_queries != "auto" && opts.rate_queries != "proxy")
    return InvalidArgument("rate control queries \"" + opts.rate_queries + "\": expected auto or proxy");
  if (!opts.rate_distortion.empty() && opts.rate_distortion != "attention" && opts.rate_distortion != "nmse")
    return InvalidArgument("rate control distortion \"" + opts.rate_distortion + "\": expected attention or nmse");
  for (uint16_t l : opts.rate_levels)
    if (l < 3 || l > 256) return InvalidArgument("rate control level count " + std::to_string(l) + ": expected 3..256");
  return Status::OK();
}

Status WriteMqkvAtRate(const KvSet& set, const std::string& path, const WriteOptions& opts,
                       Status (*write_to)(Writer&, const KvSet&, const WriteOptions&, const std::vector<CodecSpec>&)) {
  MQKV_RETURN_IF_ERROR(CheckRateCodecs(opts));
  std::vector<uint16_t> levels = opts.rate_levels.empty() ? DefaultRateLevels() : opts.rate_levels;
  std::sort(levels.begin(), levels.end());
  levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
  MQKV_ASSIGN_OR_RETURN(Candidates c, Measure(set, opts, levels));
  if (c.values == 0) return InvalidArgument("--target-bits: the snapshot has no K/V values");

  const std::string target = Num(opts.target_bits);
  KvSet shell;  // the set's model with the rate-control record; tensors are the caller's
  shell.model = set.model;
  auto& meta = shell.model.metadata;
  meta.erase(std::remove_if(meta.begin(), meta.end(), [](const auto& kv) { return kv.first == "mqkv.rate_control"; }), meta.end());
  const std::string measure = opts.rate_distortion.empty() ? "attention" : opts.rate_distortion;
  meta.emplace_back("mqkv.rate_control", "target_bits=" + target + ";distortion=" + measure +
                                             (measure == "attention" ? c.queries ? ";queries=file" : ";queries=proxy-key" : "") +
                                             ";allocation=greedy-hull;candidates=" + LevelList(levels));
  std::sort(meta.begin(), meta.end());

  const double allowed = opts.target_bits * double(c.values) / 8.0;  // K/V bytes incl. header, index, tail
  uint64_t reserve = 0;
  std::vector<uint8_t> bytes;
  for (int round = 0; round < 4; ++round) {
    if (double(reserve) >= allowed) break;
    const uint64_t budget = static_cast<uint64_t>(std::floor(allowed)) - reserve;
    MQKV_ASSIGN_OR_RETURN(std::vector<size_t> at, Allocate(c, budget, opts.target_bits));
    std::vector<CodecSpec> specs(set.tensors.size());
    for (size_t i = 0; i < set.tensors.size(); ++i) specs[i] = set.tensors[i].desc.kind == Kind::kV ? opts.v_codec : opts.k_codec;
    uint64_t blocks = 0;
    for (size_t k = 0; k < c.tensors.size(); ++k) {
      specs[c.tensors[k]].n_levels = c.hulls[k][at[k]].levels;
      blocks += c.hulls[k][at[k]].bytes;
    }
    bytes.clear();
    {
      WriterOptions wo = opts.writer;
      MQKV_ASSIGN_OR_RETURN(std::unique_ptr<Writer> w, Writer::CreateInMemory(&bytes, path, wo));
      w->SetModel(shell.model);
      MQKV_RETURN_IF_ERROR(write_to(*w, set, opts, specs));
      MQKV_RETURN_IF_ERROR(w->Finish());
    }
    MQKV_ASSIGN_OR_RETURN(std::unique_ptr<Snapshot> s, Snapshot::OpenBytes(bytes.data(), bytes.size(), path));
    MQKV_ASSIGN_OR_RETURN(SnapshotAccounting a, AccountSnapshot(*s));
    if (8.0 * double(a.total.stored_bytes) <= opts.target_bits * double(c.values)) {
      MQKV_ASSIGN_OR_RETURN(std::unique_ptr<io::OutputFile> out, io::CreateOutput(path, opts.writer.fsync));
      MQKV_RETURN_IF_ERROR(out->Write(bytes.data(), bytes.size()));
      return out->Commit();
    }
    // Header, index and tail took more than was reserved for them (zstd can only shrink blocks).
    reserve = std::max(reserve + 64, a.total.stored_bytes - std::min(blocks, a.total.stored_bytes));
  }
  return InvalidArgument("--target-bits " + target + " cannot be met: the file's header and index alone take " +
                         Num(8.0 * double(reserve) / double(c.values)) + " bits/dim");
}

}  // namespace mqkv::adapters

namespace mqkv {

const std::vector<uint16_t>& DefaultRateLevels() {
  static const std::vector<uint16_t> levels = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 20, 24, 32, 48, 64};
  return levels;
}

}  // namespace mqkv
