#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>

#include "adapters.h"
#include "mqkv/io.h"
#include "mqkv/llama.h"

namespace mqkv {
namespace {

const adapters::Adapter& AdapterFor(FileFormat f) {
  switch (f) {
    case FileFormat::kMqkv: return adapters::MqkvAdapter();
    case FileFormat::kSafetensors: return adapters::SafetensorsAdapter();
    case FileFormat::kNpy: return adapters::NpyAdapter();
    case FileFormat::kNpz: return adapters::NpzAdapter();
    default: return adapters::LlamaAdapter(f);
  }
}

constexpr FileFormat kAll[] = {FileFormat::kMqkv,         FileFormat::kSafetensors, FileFormat::kNpy,
                               FileFormat::kNpz,          FileFormat::kLlamaSession, FileFormat::kLlamaSeq,
                               FileFormat::kLlamaState,   FileFormat::kLlamaSeqState};

}  // namespace

Result<const std::vector<float>*> RowsOf(const KvTensor& t, std::vector<float>* hold) {
  if (!t.lazy()) return &t.data;
  MQKV_ASSIGN_OR_RETURN(*hold, t.load());
  if (hold->size() != uint64_t(t.desc.n_tokens) * t.desc.n_heads * t.desc.head_dim)
    return Internal("layer " + std::to_string(t.desc.layer) + " " + KindName(t.desc.kind) + ": loaded rows do not match the shape");
  return hold;
}

bool KvSet::lazy() const {
  for (const KvTensor& t : tensors)
    if (t.lazy()) return true;
  return false;
}

Status Materialize(KvSet* set) {
  for (KvTensor& t : set->tensors) {
    if (!t.lazy()) continue;
    std::vector<float> rows;
    MQKV_RETURN_IF_ERROR(RowsOf(t, &rows).status());  // a lazy tensor's rows land in `rows`
    t.data = std::move(rows);
    t.load = nullptr;
    t.load_into = nullptr;
    t.load_f16 = nullptr;
    t.load_f16_ranges = false;
  }
  set->backing.reset();
  return Status::OK();
}

const KvTensor* KvSet::Find(uint32_t layer, Kind kind) const {
  for (const KvTensor& t : tensors)
    if (t.desc.layer == layer && t.desc.kind == kind) return &t;
  return nullptr;
}

const char* FileFormatName(FileFormat f) {
  switch (f) {
    case FileFormat::kMqkv: return "mqkv";
    case FileFormat::kSafetensors: return "safetensors";
    case FileFormat::kNpy: return "npy";
    case FileFormat::kNpz: return "npz";
    case FileFormat::kLlamaSession: return "llama-session";
    case FileFormat::kLlamaSeq: return "llama-seq";
    case FileFormat::kLlamaState: return "llama-state";
    case FileFormat::kLlamaSeqState: return "llama-seq-state";
  }
  return "?";
}

Result<FileFormat> ParseFileFormat(std::string_view name) {
  for (FileFormat f : kAll)
    if (name == FileFormatName(f)) return f;
  return InvalidArgument("unknown format \"" + std::string(name) +
                         "\" (mqkv, safetensors, npy, npz, llama-session, llama-seq, llama-state, llama-seq-state)");
}

std::optional<FileFormat> FileFormatFromExtension(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const auto dot = path.find_last_of('.');
  const std::string ext = dot == std::string::npos || (slash != std::string::npos && dot < slash) ? "" : path.substr(dot + 1);
  if (ext == "mqkv") return FileFormat::kMqkv;
  if (ext == "safetensors") return FileFormat::kSafetensors;
  if (ext == "npy") return FileFormat::kNpy;
  if (ext == "npz") return FileFormat::kNpz;
  return std::nullopt;
}

Result<FileFormat> DetectFileFormat(const std::string& path) {
  uint8_t head[64] = {};
  size_t n = 0;
  if (IsUrl(path)) {
    // A remote object: its extension when it names a format (no request), else its first bytes.
    if (auto f = FileFormatFromExtension(path)) return *f;
    MQKV_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> src, OpenSource(path));
    n = static_cast<size_t>(std::min<uint64_t>(sizeof head, src->size()));
    MQKV_ASSIGN_OR_RETURN(ByteRange r, src->Read(0, n));
    if (n) std::memcpy(head, r.data, n);
  } else if (FILE* f = std::fopen(path.c_str(), "rb")) {
    n = std::fread(head, 1, sizeof head, f);
    std::fclose(f);
  }
  for (FileFormat fmt : kAll) {
    const auto& a = AdapterFor(fmt);
    if (n && a.sniff && a.sniff(head, n)) return fmt;
  }
  if (auto f = FileFormatFromExtension(path)) return *f;
  Status s = InvalidArgument("cannot tell the format from the file's first bytes or its extension; pass --from/--to");
  s.WithFile(path);
  return s;
}

Result<KvSet> ReadKvSet(const std::string& path, FileFormat format, const ReadOptions& opts) {
  const auto& a = AdapterFor(format);
  // mqkv with a token range decodes only the blocks holding those rows.
  auto r = format == FileFormat::kMqkv && opts.stream ? adapters::ReadMqkvLazy(path, opts.tokens)
           : format == FileFormat::kMqkv && opts.tokens ? adapters::ReadMqkvRows(path, opts.tokens->first, opts.tokens->second)
           : format == FileFormat::kMqkv                ? adapters::ReadMqkv(path, opts.threads)
           : format == FileFormat::kSafetensors && opts.stream ? adapters::ReadSafetensorsLazy(path)
           : format == FileFormat::kNpy && opts.stream         ? adapters::ReadNpyLazy(path)
           : format == FileFormat::kNpz && opts.stream         ? adapters::ReadNpzLazy(path)
           : IsLlamaFormat(format) && opts.stream               ? adapters::ReadLlamaLazy(path, format, {})
                                                          : a.read(path, format);
  if (!r.ok()) {
    Status s = r.status();
    return s.WithFile(path);
  }
  if (opts.tokens && format != FileFormat::kMqkv) {
    Status s = SliceTokens(&*r, opts.tokens->first, opts.tokens->second);
    if (!s.ok()) return s.WithFile(path);
  }
  return r;
}

Status WriteKvSet(const KvSet& set, const std::string& path, FileFormat format, const WriteOptions& opts) {
  // Every writer takes a lazy set tensor by tensor (loading each when it writes it).
  Status s = AdapterFor(format).write(set, path, format, opts);
  return s.WithFile(path);
}

Status adapters::CheckTokenRange(uint32_t begin, uint32_t end, uint32_t n_tokens) {
  if (begin > end) return InvalidArgument("token range " + std::to_string(begin) + ":" + std::to_string(end) + " is empty or reversed");
  if (end > n_tokens)
    return OutOfRange("token range " + std::to_string(begin) + ":" + std::to_string(end) + " exceeds the " + std::to_string(n_tokens) + " tokens held");
  return Status::OK();
}

Status SliceTokens(KvSet* set, uint32_t begin, uint32_t end) {
  MQKV_RETURN_IF_ERROR(adapters::CheckTokenRange(begin, end, UINT32_MAX));
  for (KvTensor& t : set->tensors)
    if (t.desc.kind != Kind::kQ) MQKV_RETURN_IF_ERROR(adapters::CheckTokenRange(begin, end, t.desc.n_tokens));
  const auto row = [](const KvTensor& t) { return uint64_t(t.desc.n_heads) * t.desc.head_dim; };
  for (KvTensor& t : set->tensors) {
    if (t.desc.kind == Kind::kQ) continue;
    if (t.lazy()) {  // cut when loaded
      t.load_into = nullptr;  // the whole tensor's rows
      t.load_f16 = nullptr;  // its row ranges are the unsliced tensor's (the fp32 path cuts them)
      t.load = [load = std::move(t.load), b = begin * row(t), e = end * row(t)]() -> Result<std::vector<float>> {
        MQKV_ASSIGN_OR_RETURN(std::vector<float> all, load());
        if (all.size() < e) return Internal("loaded rows are fewer than the tensor's shape");
        return std::vector<float>(all.begin() + b, all.begin() + e);
      };
    } else {
      t.data = std::vector<float>(t.data.begin() + begin * row(t), t.data.begin() + end * row(t));
    }
    t.desc.n_tokens = end - begin;
  }
  return adapters::SliceQueriesAndPrefix(set, begin, end);
}

Status adapters::SliceQueriesAndPrefix(KvSet* set, uint32_t begin, uint32_t end) {
  const auto row = [](const KvTensor& t) { return uint64_t(t.desc.n_heads) * t.desc.head_dim; };
  for (KvTensor& t : set->tensors) {
    if (t.desc.kind != Kind::kQ) continue;
    std::vector<float> keep;
    std::vector<int32_t> pos;
    for (uint32_t i = 0; i < t.desc.n_tokens; ++i) {
      const int32_t p = t.desc.positions[i];
      if (p < int64_t(begin) || p >= int64_t(end)) continue;
      pos.push_back(p - static_cast<int32_t>(begin));
      keep.insert(keep.end(), t.data.begin() + i * row(t), t.data.begin() + (i + 1) * row(t));
    }
    t.desc.positions = std::move(pos);
    t.desc.n_tokens = static_cast<uint32_t>(t.desc.positions.size());
    t.data = std::move(keep);
  }
  set->tensors.erase(std::remove_if(set->tensors.begin(), set->tensors.end(),
                                    [](const KvTensor& t) { return t.desc.kind == Kind::kQ && t.desc.n_tokens == 0; }),
                     set->tensors.end());
  auto cut = [&](std::vector<int32_t>& v) {
    if (v.empty()) return;
    if (end > v.size()) v.clear();
    else v = std::vector<int32_t>(v.begin() + begin, v.begin() + end);
  };
  MQKV_RETURN_IF_ERROR(SliceLlamaCells(&set->model, begin, end));  // before positions are cut
  cut(set->model.tokens);
  cut(set->model.positions);
  cut(set->model.seq_ids);
  return Status::OK();
}

}  // namespace mqkv
