// Fidelity of decoded K/V against a reference (spec/MEASURE.md, "Fidelity"): elementwise
// relative MSE, cosine of token head vectors, and causal attention at chosen query positions.
// All arithmetic in double.
#include <algorithm>
#include <cmath>
#include <map>

#include "mqkv/measure.h"

namespace mqkv {

double TensorFidelity::rel_mse() const {
  if (sq_ref == 0) return sq_err == 0 ? 0.0 : INFINITY;
  return sq_err / sq_ref;
}

void AttentionFidelity::Add(double out_cos, double score_cos) {
  ++cases;
  out_cos_sum += out_cos;
  score_cos_sum += score_cos;
  out_cos_min = std::min(out_cos_min, out_cos);
  score_cos_min = std::min(score_cos_min, score_cos);
}

AttentionFidelity& AttentionFidelity::operator+=(const AttentionFidelity& o) {
  cases += o.cases;
  out_cos_sum += o.out_cos_sum;
  score_cos_sum += o.score_cos_sum;
  out_cos_min = std::min(out_cos_min, o.out_cos_min);
  score_cos_min = std::min(score_cos_min, o.score_cos_min);
  return *this;
}

double Cosine(const double* a, const double* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; ++i) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  if (aa == 0 && bb == 0) return 1.0;
  if (aa == 0 || bb == 0) return 0.0;
  // sqrt(aa * bb) keeps the cosine of a vector with itself exactly 1 (sqrt(fl(x*x)) == x in
  // binary floating point); fall back to separate roots when the product leaves the range.
  const double prod = aa * bb;
  const double den = std::isfinite(prod) && prod > 0 ? std::sqrt(prod) : std::sqrt(aa) * std::sqrt(bb);
  return std::clamp(ab / den, -1.0, 1.0);
}

void CausalAttention(const double* q, const double* keys, const double* values, uint32_t n, uint32_t d_k, uint32_t d_v,
                     std::vector<double>* weights, std::vector<double>* out) {
  weights->assign(n, 0.0);
  out->assign(d_v, 0.0);
  if (n == 0) return;
  const double inv = 1.0 / std::sqrt(double(d_k));
  double mx = -INFINITY;
  for (uint32_t j = 0; j < n; ++j) {
    const double* k = keys + uint64_t(j) * d_k;
    double s = 0;
    for (uint32_t i = 0; i < d_k; ++i) s += q[i] * k[i];
    (*weights)[j] = s * inv;
    mx = std::max(mx, (*weights)[j]);
  }
  double z = 0;
  for (uint32_t j = 0; j < n; ++j) z += ((*weights)[j] = std::exp((*weights)[j] - mx));
  for (uint32_t j = 0; j < n; ++j) {
    const double a = ((*weights)[j] /= z);
    const double* v = values + uint64_t(j) * d_v;
    for (uint32_t i = 0; i < d_v; ++i) (*out)[i] += a * v[i];
  }
}

namespace {

std::string Name(uint32_t layer, Kind k) { return "layer " + std::to_string(layer) + " " + KindName(k); }

void CompareTensor(const KvTensor& dec, const KvTensor& ref, TensorFidelity* f) {
  const uint32_t d = dec.desc.head_dim;
  const uint64_t vecs = uint64_t(dec.desc.n_tokens) * dec.desc.n_heads;
  std::vector<double> a(d), b(d);
  for (uint64_t v = 0; v < vecs; ++v) {
    const float* x = ref.data.data() + v * d;
    const float* y = dec.data.data() + v * d;
    for (uint32_t i = 0; i < d; ++i) {
      a[i] = x[i];
      b[i] = y[i];
      const double e = a[i] - b[i];
      f->sq_err += e * e;
      f->sq_ref += a[i] * a[i];
    }
    const double c = Cosine(a.data(), b.data(), d);
    f->cos_sum += c;
    f->cos_min = std::min(f->cos_min, c);
  }
  f->vectors += vecs;
  f->values += vecs * d;
}

// Head `h` of a [n][heads][d] float tensor, rows [0, n), as contiguous doubles.
std::vector<double> HeadRows(const KvTensor& t, uint32_t h, uint32_t n) {
  const uint32_t d = t.desc.head_dim, heads = t.desc.n_heads;
  std::vector<double> o(uint64_t(n) * d);
  for (uint32_t j = 0; j < n; ++j) {
    const float* src = t.data.data() + (uint64_t(j) * heads + h) * d;
    for (uint32_t i = 0; i < d; ++i) o[uint64_t(j) * d + i] = src[i];
  }
  return o;
}

struct Query {
  uint32_t pos;
  uint32_t kv_head;
  std::vector<double> q;
};

}  // namespace

// Per-tensor error of every decoded K/V tensor against its reference (shapes checked), into
// out->tensors and out->total; `layers` collects each layer's decoded K and V.
Status CompareTensors(const KvSet& decoded, const KvSet& reference, Fidelity* out_ptr,
                      std::map<uint32_t, std::pair<const KvTensor*, const KvTensor*>>* layers_ptr) {
  Fidelity& out = *out_ptr;
  auto& layers = *layers_ptr;
  for (const KvTensor& t : decoded.tensors) {
    if (t.desc.kind == Kind::kQ) continue;
    const KvTensor* r = reference.Find(t.desc.layer, t.desc.kind);
    if (!r) return FormatError("the reference has no " + Name(t.desc.layer, t.desc.kind) + " tensor");
    if (r->desc.n_tokens != t.desc.n_tokens || r->desc.n_heads != t.desc.n_heads || r->desc.head_dim != t.desc.head_dim)
      return FormatError("reference " + Name(t.desc.layer, t.desc.kind) + " has shape [" + std::to_string(r->desc.n_tokens) + "," +
                             std::to_string(r->desc.n_heads) + "," + std::to_string(r->desc.head_dim) + "], the file [" +
                             std::to_string(t.desc.n_tokens) + "," + std::to_string(t.desc.n_heads) + "," +
                             std::to_string(t.desc.head_dim) + "]");
    const uint64_t want = uint64_t(t.desc.n_tokens) * t.desc.n_heads * t.desc.head_dim;
    if (t.data.size() != want || r->data.size() != want)
      return FormatError(Name(t.desc.layer, t.desc.kind) + ": data size does not match its shape");
    TensorFidelity f;
    f.layer = t.desc.layer;
    f.kind = t.desc.kind;
    CompareTensor(t, *r, &f);
    out.total.values += f.values;
    out.total.vectors += f.vectors;
    out.total.sq_err += f.sq_err;
    out.total.sq_ref += f.sq_ref;
    out.total.cos_sum += f.cos_sum;
    out.total.cos_min = std::min(out.total.cos_min, f.cos_min);
    out.tensors.push_back(f);
    auto& slot = layers[t.desc.layer];
    (t.desc.kind == Kind::kK ? slot.first : slot.second) = &t;
  }

  return Status::OK();
}

// The queries of one layer (spec/MEASURE.md, "Queries"): the reference's Q tensor, else the file's
// own (stored losslessly as f32 by the writers), else reference keys at opts.positions as a proxy.
// *source names which one.
Result<std::vector<Query>> LayerQueries(uint32_t layer, const KvSet& decoded, const KvSet& reference, const KvTensor* rk, uint32_t n,
                                        uint32_t n_kv, uint32_t d_k, const FidelityOptions& opts, const char** source) {
  std::vector<Query> queries;
  const KvTensor* rq = reference.Find(layer, Kind::kQ);
  const char* qsrc = "reference";
  if (!rq || rq->desc.n_tokens == 0) {
    rq = decoded.Find(layer, Kind::kQ);
    qsrc = "file";
  }
  if (rq && rq->desc.n_tokens > 0) {
    const uint32_t n_q = rq->desc.n_heads;
    if (rq->desc.head_dim != d_k)
      return FormatError(std::string(qsrc) + " layer " + std::to_string(layer) + " q has head dim " + std::to_string(rq->desc.head_dim) +
                             ", keys " + std::to_string(d_k));
    if (n_q % n_kv != 0)
      return FormatError(std::string(qsrc) + " layer " + std::to_string(layer) + " has " + std::to_string(n_q) + " query heads, not a multiple of " +
                             std::to_string(n_kv) + " KV heads");
    if (rq->desc.positions.size() != rq->desc.n_tokens || rq->data.size() != uint64_t(rq->desc.n_tokens) * n_q * d_k)
      return FormatError(std::string(qsrc) + " layer " + std::to_string(layer) + " q: positions or data do not match its shape");
    const uint32_t group = n_q / n_kv;
    for (uint32_t r = 0; r < rq->desc.n_tokens; ++r) {
      const int32_t p = rq->desc.positions[r];
      if (p < 0 || uint32_t(p) >= n)
        return OutOfRange(std::string(qsrc) + " layer " + std::to_string(layer) + " q row " + std::to_string(r) + " has position " +
                          std::to_string(p) + " outside the " + std::to_string(n) + "-token prefix");
      for (uint32_t h = 0; h < n_q; ++h) {
        const float* src = rq->data.data() + (uint64_t(r) * n_q + h) * d_k;
        queries.push_back({uint32_t(p), h / group, std::vector<double>(src, src + d_k)});
      }
    }
    *source = qsrc;
  } else {
    std::vector<uint32_t> pos;
    for (double f : opts.positions) {
      const int64_t p = int64_t(std::floor(f * n + 0.5)) - 1;
      pos.push_back(uint32_t(std::clamp<int64_t>(p, 0, n - 1)));
    }
    std::sort(pos.begin(), pos.end());
    pos.erase(std::unique(pos.begin(), pos.end()), pos.end());
    for (uint32_t p : pos)
      for (uint32_t h = 0; h < n_kv; ++h) {
        const float* src = rk->data.data() + (uint64_t(p) * n_kv + h) * d_k;
        queries.push_back({p, h, std::vector<double>(src, src + d_k)});
      }
    *source = "proxy:reference-key";
  }
  return queries;
}

// Attention output and score cosines of every query against reference and decoded K/V.
LayerAttention AttendLayer(uint32_t layer, std::vector<Query> queries, const KvTensor& rk, const KvTensor& rv, const KvTensor& dk,
                           const KvTensor& dv, uint32_t n, uint32_t d_k, uint32_t d_v) {
  LayerAttention la;
  la.layer = layer;
  for (const Query& q : queries) la.positions.push_back(q.pos);
  std::sort(la.positions.begin(), la.positions.end());
  la.positions.erase(std::unique(la.positions.begin(), la.positions.end()), la.positions.end());
  // Group queries by KV head so each head's rows are converted once.
  std::stable_sort(queries.begin(), queries.end(), [](const Query& a, const Query& b) { return a.kv_head < b.kv_head; });
  std::vector<double> wr, wd, orf, od;
  for (size_t i = 0; i < queries.size();) {
    const uint32_t h = queries[i].kv_head;
    const std::vector<double> kr = HeadRows(rk, h, n), kd = HeadRows(dk, h, n);
    const std::vector<double> vr = HeadRows(rv, h, n), vd = HeadRows(dv, h, n);
    for (; i < queries.size() && queries[i].kv_head == h; ++i) {
      const Query& q = queries[i];
      CausalAttention(q.q.data(), kr.data(), vr.data(), q.pos + 1, d_k, d_v, &wr, &orf);
      CausalAttention(q.q.data(), kd.data(), vd.data(), q.pos + 1, d_k, d_v, &wd, &od);
      la.attention.Add(Cosine(orf.data(), od.data(), d_v), Cosine(wr.data(), wd.data(), q.pos + 1));
    }
  }
  return la;
}

Result<Fidelity> MeasureFidelity(const KvSet& decoded, const KvSet& reference, const FidelityOptions& opts) {
  for (double f : opts.positions)
    if (!(f > 0.0 && f <= 1.0)) return InvalidArgument("query position fraction " + std::to_string(f) + " is outside (0, 1]");
  Fidelity out;
  std::map<uint32_t, std::pair<const KvTensor*, const KvTensor*>> layers;  // decoded K, V
  MQKV_RETURN_IF_ERROR(CompareTensors(decoded, reference, &out, &layers));

  std::string source;  // the query source shared by every layer so far, "mixed" if not
  auto note = [&](const char* src) { source = source.empty() || source == src ? src : "mixed"; };
  for (const auto& [layer, kv] : layers) {
    const KvTensor* dk = kv.first;
    const KvTensor* dv = kv.second;
    if (!dk || !dv) continue;
    const KvTensor* rk = reference.Find(layer, Kind::kK);
    const KvTensor* rv = reference.Find(layer, Kind::kV);
    const uint32_t n = dk->desc.n_tokens;
    if (dv->desc.n_tokens != n || dv->desc.n_heads != dk->desc.n_heads)
      return FormatError("layer " + std::to_string(layer) + ": K and V differ in tokens or heads");
    if (n == 0) continue;
    const uint32_t n_kv = dk->desc.n_heads, d_k = dk->desc.head_dim, d_v = dv->desc.head_dim;
    const char* qsrc = "";
    MQKV_ASSIGN_OR_RETURN(std::vector<Query> queries, LayerQueries(layer, decoded, reference, rk, n, n_kv, d_k, opts, &qsrc));
    note(qsrc);
    LayerAttention la = AttendLayer(layer, std::move(queries), *rk, *rv, *dk, *dv, n, d_k, d_v);
    out.attention += la.attention;
    out.layers.push_back(std::move(la));
  }
  out.queries = source.empty() ? "none" : source;
  return out;
}

}  // namespace mqkv
