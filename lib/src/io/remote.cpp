// The remote ByteSource (ranged GETs pinned to the ETag seen at open, a byte-budgeted cache of
// fetched ranges) and the S3 multipart upload (spec/REMOTE.md).
#include "remote.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <list>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "util/parallel.h"

namespace mqkv::io {
namespace {

// "bytes A-B/T" -> A, B, T (T may be "*": total 0 and false returned when so required)
bool ParseContentRange(const std::string& v, uint64_t* a, uint64_t* b, uint64_t* total) {
  unsigned long long x, y, z;
  char tail;
  if (std::sscanf(v.c_str(), "bytes %llu-%llu/%llu%c", &x, &y, &z, &tail) != 3) return false;
  if (y < x || y >= z) return false;
  *a = x, *b = y, *total = z;
  return true;
}

class RemoteSource final : public ByteSource {
 public:
  RemoteSource(std::unique_ptr<HttpClient> http, const RemoteOptions& opts) : http_(std::move(http)), opts_(opts) {}
  ~RemoteSource() override {
    if (bg_thread_.joinable()) bg_thread_.join();
  }

  Status Open();
  const std::string& name() const override { return http_->url().name; }
  uint64_t size() const override { return size_; }
  std::string identity() const override { return etag_; }
  Result<ByteRange> Read(uint64_t offset, uint64_t n) override;
  Status Prefetch(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t max_gap) override;
  bool Holds(uint64_t offset, uint64_t n) const override {
    std::lock_guard<std::mutex> lock(mu_);
    return Locate(offset, n) != chunks_.end();
  }
  IoStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    IoStats t = http_->stats();
    std::vector<const HttpClient*> others;
    for (const auto& c : pool_) others.push_back(c.get());
    if (bg_http_) others.push_back(bg_http_.get());
    for (const HttpClient* c : others) {
      const IoStats x = c->stats();
      t.requests += x.requests, t.bytes_fetched += x.bytes_fetched, t.retries += x.retries;
    }
    return t;
  }

 private:
  // Fetched bytes, not zero-filled first (a whole-object pass would fault every page twice).
  struct Buffer {
    explicit Buffer(uint64_t n) : p(new uint8_t[n]), n(n) {}
    std::unique_ptr<uint8_t[]> p;
    uint64_t n;
    uint8_t* data() const { return p.get(); }
    uint64_t size() const { return n; }
  };
  struct Chunk {
    uint64_t offset;
    std::shared_ptr<Buffer> bytes;
  };
  Status Fail(Status s) const { return std::move(s.WithFile(name())); }
  // The cached chunk holding [offset, offset + n), or end() (mu_ held).
  std::list<Chunk>::const_iterator Locate(uint64_t offset, uint64_t n) const;
  // The same chunk, moved to the front (most recent); or null.
  const Chunk* Find(uint64_t offset, uint64_t n);
  // Missing ranges as runs (mu_ held): merged when less than max_gap apart, each at most half
  // the cache budget so a run never evicts itself before it is read.
  std::vector<std::pair<uint64_t, uint64_t>> MissingRuns(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t max_gap);
  Status Fetch(uint64_t offset, uint64_t n);  // one ranged GET into a new chunk (mu_ held)
  // One ranged GET through `http` (no lock needed: touches neither the cache nor http_).
  Result<Chunk> FetchWith(HttpClient& http, uint64_t offset, uint64_t n) const;
  // Many runs at once, each through its own connection (up to kParallel).
  Status FetchParallel(const std::vector<std::pair<uint64_t, uint64_t>>& runs);
  static constexpr size_t kParallel = 8;
  static constexpr uint64_t kReadAheadSlack = 256;  // block padding (< 64) and small size differences
  // Background read-ahead (mu_ held): after two fetches in a row that each start where the
  // previous one ended, the next range of the same length (+256 bytes) is fetched on a connection of
  // its own while the caller checks and decodes what it has; a fetch touching it waits for it.
  void AfterForegroundFetch(uint64_t offset, uint64_t n);
  void StartReadAhead(uint64_t offset, uint64_t n);
  void AwaitReadAhead(std::unique_lock<std::mutex>& lock);
  struct ReadAhead {
    bool active = false, done = false;
    uint64_t offset = 0, length = 0;
    Status status;
    std::optional<Chunk> chunk;
  } bg_;
  std::thread bg_thread_;
  std::condition_variable bg_cv_;
  std::unique_ptr<HttpClient> bg_http_;
  uint64_t last_end_ = UINT64_MAX;
  int sequential_ = 0;
  void Insert(Chunk c);

  std::unique_ptr<HttpClient> http_;
  RemoteOptions opts_;
  uint64_t size_ = 0;
  std::string etag_;
  mutable std::mutex mu_;
  std::list<Chunk> chunks_;  // most recently used first
  std::vector<std::unique_ptr<HttpClient>> pool_;  // extra connections for parallel prefetch
  std::mutex pool_mu_;                             // one parallel prefetch at a time uses pool_
  uint64_t cached_bytes_ = 0;
};

std::list<RemoteSource::Chunk>::const_iterator RemoteSource::Locate(uint64_t offset, uint64_t n) const {
  return std::find_if(chunks_.begin(), chunks_.end(),
                      [&](const Chunk& c) { return offset >= c.offset && offset + n <= c.offset + c.bytes->size(); });
}

const RemoteSource::Chunk* RemoteSource::Find(uint64_t offset, uint64_t n) {
  const auto it = Locate(offset, n);
  if (it == chunks_.end()) return nullptr;
  chunks_.splice(chunks_.begin(), chunks_, it);
  return &chunks_.front();
}

void RemoteSource::Insert(Chunk c) {
  cached_bytes_ += c.bytes->size();
  chunks_.push_front(std::move(c));
  // Evict least recently used chunks past the budget (never the one just fetched; a reader that
  // still holds an evicted chunk's ByteRange keeps its bytes alive through the owner).
  while (cached_bytes_ > opts_.cache_bytes && chunks_.size() > 1) {
    cached_bytes_ -= chunks_.back().bytes->size();
    chunks_.pop_back();
  }
}

Status RemoteSource::Open() {
  // One suffix-range request: the tail and, usually, the whole footer; it also tells the size
  // and the ETag every later request is pinned to.
  HttpRequest req;
  req.headers.push_back("Range: bytes=-" + std::to_string(std::max<uint64_t>(opts_.open_suffix_bytes, 64)));
  req.text_limit = std::max<uint64_t>(opts_.open_suffix_bytes, 64);
  MQKV_ASSIGN_OR_RETURN(HttpResponse r, http_->Send(req));
  etag_ = r.etag;
  auto bytes = std::make_shared<Buffer>(r.text.size());
  if (!r.text.empty()) std::memcpy(bytes->data(), r.text.data(), r.text.size());
  if (r.status == 206) {
    uint64_t a, b, total;
    if (!ParseContentRange(r.content_range, &a, &b, &total) || b + 1 != total || b - a + 1 != bytes->size())
      return Fail(IoError("open: answer to a suffix range has a bad Content-Range \"" + r.content_range + "\" for " +
                          std::to_string(bytes->size()) + " bytes"));
    size_ = total;
    Insert({a, std::move(bytes)});
    return Status::OK();
  }
  if (r.status == 200) {  // the whole object (smaller than the suffix, or Range ignored)
    size_ = bytes->size();
    Insert({0, std::move(bytes)});
    return Status::OK();
  }
  if (r.status == 416 && r.content_range == "bytes */0") {
    size_ = 0;  // an empty object
    return Status::OK();
  }
  return http_->Unexpected("open", r);
}

Result<RemoteSource::Chunk> RemoteSource::FetchWith(HttpClient& http, uint64_t offset, uint64_t n) const {
  auto bytes = std::make_shared<Buffer>(n);
  HttpRequest req;
  req.headers.push_back("Range: bytes=" + std::to_string(offset) + "-" + std::to_string(offset + n - 1));
  if (!etag_.empty()) req.headers.push_back("If-Match: " + etag_);
  req.dst = bytes->data();
  req.dst_size = n;
  MQKV_ASSIGN_OR_RETURN(HttpResponse r, http.Send(req));
  if (r.status == 206) {
    uint64_t a, b, total;
    if (!ParseContentRange(r.content_range, &a, &b, &total) || a != offset || b != offset + n - 1 || total != size_)
      return Fail(IoError("answer to range " + std::to_string(offset) + "-" + std::to_string(offset + n - 1) +
                          " has Content-Range \"" + r.content_range + "\" (object of " + std::to_string(size_) + " bytes)"));
  } else if (!(r.status == 200 && offset == 0 && n == size_)) {
    if (r.status == 200) return Fail(IoError("the server ignored a Range request (HTTP 200): ranged reads need Range support"));
    return http.Unexpected("GET bytes " + std::to_string(offset) + "-" + std::to_string(offset + n - 1), r);
  }
  if (!etag_.empty() && !r.etag.empty() && r.etag != etag_)
    return Fail(IoError("the object changed since it was opened (ETag " + r.etag + ", opened as " + etag_ + ")"));
  return Chunk{offset, std::move(bytes)};
}

Status RemoteSource::Fetch(uint64_t offset, uint64_t n) {
  MQKV_ASSIGN_OR_RETURN(Chunk c, FetchWith(*http_, offset, n));
  Insert(std::move(c));
  return Status::OK();
}

Status RemoteSource::FetchParallel(const std::vector<std::pair<uint64_t, uint64_t>>& runs) {
  const size_t k = std::min(runs.size(), kParallel);
  std::lock_guard<std::mutex> pool_lock(pool_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (pool_.size() < k) {
      MQKV_ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> c, HttpClient::Create(http_->url(), opts_));
      pool_.push_back(std::move(c));
    }
  }
  // Worker w uses connection pool_[w] (k workers, k connections).
  return util::ParallelFor(runs.size(), unsigned(k), [&](size_t i, unsigned w) -> Status {
    MQKV_ASSIGN_OR_RETURN(Chunk c, FetchWith(*pool_[w], runs[i].first, runs[i].second));
    std::lock_guard<std::mutex> lock(mu_);
    Insert(std::move(c));
    return Status::OK();
  });
}

Result<ByteRange> RemoteSource::Read(uint64_t offset, uint64_t n) {
  MQKV_RETURN_IF_ERROR(CheckReadRange(name(), offset, n, size_));
  if (n == 0) return ByteRange{nullptr, 0, nullptr};
  std::unique_lock<std::mutex> lock(mu_);
  const Chunk* c = Find(offset, n);
  if (!c && bg_.active) {
    AwaitReadAhead(lock);
    c = Find(offset, n);
  }
  if (!c) {
    MQKV_RETURN_IF_ERROR(Fetch(offset, n));
    AfterForegroundFetch(offset, n);
    c = Find(offset, n);
  }
  return ByteRange{c->bytes->data() + (offset - c->offset), n, c->bytes};
}

std::vector<std::pair<uint64_t, uint64_t>> RemoteSource::MissingRuns(const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                                                                   uint64_t max_gap) {
  const uint64_t max_run = std::max<uint64_t>(opts_.cache_bytes / 2, 1);
  std::vector<std::pair<uint64_t, uint64_t>> runs;  // (offset, length)
  for (const auto& [off, len] : ranges) {
    if (len == 0 || off > size_ || len > size_ - off || Find(off, len)) continue;
    if (!runs.empty()) {
      auto& [rb, rl] = runs.back();
      if (off >= rb + rl && off - (rb + rl) <= max_gap && off + len - rb <= max_run) {
        rl = off + len - rb;
        continue;
      }
    }
    runs.emplace_back(off, len);
  }
  return runs;
}

Status RemoteSource::Prefetch(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t max_gap) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  {
    std::unique_lock<std::mutex> lock(mu_);
    runs = MissingRuns(ranges, max_gap);
    if (!runs.empty() && bg_.active) {
      // Wait for the read-ahead, which may hold these ranges, and look again.
      const uint64_t bg_off = bg_.offset, bg_end = bg_.offset + bg_.length;
      const bool served = runs.front().first >= bg_off && runs.front().first < bg_end;
      AwaitReadAhead(lock);
      // Served by the read-ahead: keep reading ahead, from where this request ends, as much again.
      if (served) {
        const uint64_t req_begin = ranges.front().first, req_end = ranges.back().first + ranges.back().second;
        StartReadAhead(req_end, req_end - req_begin + kReadAheadSlack);
      }
      runs = MissingRuns(ranges, max_gap);
    }
    if (runs.size() == 1) {
      MQKV_RETURN_IF_ERROR(Fetch(runs[0].first, runs[0].second));
      AfterForegroundFetch(runs[0].first, runs[0].second);
      return Status::OK();
    }
  }
  // Disjoint runs (e.g. a walk over the headers of large blocks) go out in parallel. Their total
  // stays within the budget only if the caller asked for that much; chunks are kept alive by
  // their owners either way.
  return runs.empty() ? Status::OK() : FetchParallel(runs);
}

void RemoteSource::AfterForegroundFetch(uint64_t offset, uint64_t n) {
  // Blocks are 64-aligned: a run that starts within 64 bytes of the last one's end follows it.
  sequential_ = (last_end_ != UINT64_MAX && offset >= last_end_ && offset - last_end_ < 64) ? sequential_ + 1 : 0;
  last_end_ = offset + n;
  if (sequential_ >= 2 && !bg_.active) StartReadAhead(offset + n, n + kReadAheadSlack);
}

void RemoteSource::StartReadAhead(uint64_t offset, uint64_t n) {
  if (offset >= size_) return;
  n = std::min({n, size_ - offset, std::max<uint64_t>(opts_.cache_bytes / 4, 1)});
  if (Find(offset, n)) return;  // e.g. the tail, fetched at open
  if (!bg_http_) {
    auto c = HttpClient::Create(http_->url(), opts_);
    if (!c.ok()) return;  // read-ahead is an optimisation: the foreground fetch still works
    bg_http_ = std::move(*c);
  }
  if (bg_thread_.joinable()) bg_thread_.join();
  bg_ = ReadAhead{};
  bg_.active = true;
  bg_.offset = offset;
  bg_.length = n;
  bg_thread_ = std::thread([this, offset, n] {
    Result<Chunk> c = FetchWith(*bg_http_, offset, n);
    std::lock_guard<std::mutex> lock(mu_);
    if (c.ok()) bg_.chunk = std::move(*c);
    else bg_.status = c.status();
    bg_.done = true;
    bg_cv_.notify_all();
  });
}

void RemoteSource::AwaitReadAhead(std::unique_lock<std::mutex>& lock) {
  if (!bg_.active) return;
  bg_cv_.wait(lock, [&] { return bg_.done; });
  // A failed read-ahead is dropped: the foreground request retries and reports its own error.
  if (bg_.chunk) Insert(std::move(*bg_.chunk));
  bg_.active = false;
  bg_.chunk.reset();
  last_end_ = bg_.offset + bg_.length;
}

// S3 multipart upload: parts of kPartBytes; part 1 is held until Commit() (so WriteAt can patch
// the file header) and an object of at most one part is a single PUT. Nothing exists under the
// key until CompleteMultipartUpload (or the PUT) succeeds; an uncommitted upload is aborted.
class S3Upload final : public OutputFile {
 public:
  static constexpr uint64_t kPartBytes = 8ull << 20;  // S3: every part but the last >= 5 MiB
  explicit S3Upload(std::unique_ptr<HttpClient> http) : http_(std::move(http)) { path_ = http_->url().name; }
  ~S3Upload() override;
  Status Write(const void* data, uint64_t n) override;
  Status WriteAt(uint64_t offset, const void* data, uint64_t n) override;
  Status Commit() override;

 private:
  Status Fail(Status s) {
    s.WithFile(path_);
    if (sticky_.ok()) sticky_ = s;
    return s;
  }
  Status Start();
  Status PutPart(int number, const std::vector<uint8_t>& bytes);
  std::unique_ptr<HttpClient> http_;
  std::vector<uint8_t> first_, current_;
  std::string upload_id_;
  std::vector<std::string> etags_;  // etags_[k] for part k + 1 (part 1 filled in at Commit)
  bool committed_ = false;
  Status sticky_;
};

S3Upload::~S3Upload() {
  if (committed_ || upload_id_.empty()) return;
  HttpRequest req;  // best effort: abort, so the store can drop the parts
  req.method = "DELETE";
  req.query = "uploadId=" + upload_id_;
  (void)http_->Send(req);
}

Status S3Upload::Start() {
  HttpRequest req;
  req.method = "POST";
  req.query = "uploads=";  // with "=": libcurl 7.88 signs a bare "uploads" as it is, S3 canonicalizes "uploads="
  MQKV_ASSIGN_OR_RETURN(HttpResponse r, http_->Send(req));
  if (r.status != 200) return Fail(http_->Unexpected("CreateMultipartUpload", r));
  const auto a = r.text.find("<UploadId>"), b = r.text.find("</UploadId>");
  if (a == std::string::npos || b == std::string::npos || b <= a + 10)
    return Fail(IoError("CreateMultipartUpload: the answer has no UploadId"));
  upload_id_ = r.text.substr(a + 10, b - a - 10);
  etags_.assign(1, "");
  return Status::OK();
}

Status S3Upload::PutPart(int number, const std::vector<uint8_t>& bytes) {
  HttpRequest req;
  req.method = "PUT";
  req.query = "partNumber=" + std::to_string(number) + "&uploadId=" + upload_id_;
  req.body = bytes.data();
  req.body_size = bytes.size();
  MQKV_ASSIGN_OR_RETURN(HttpResponse r, http_->Send(req));
  if (r.status != 200 || r.etag.empty()) return Fail(http_->Unexpected("UploadPart " + std::to_string(number), r));
  if (etags_.size() < size_t(number)) etags_.resize(number);
  etags_[number - 1] = r.etag;
  return Status::OK();
}

Status S3Upload::Write(const void* data, uint64_t n) {
  if (!sticky_.ok()) return sticky_;
  if (committed_) return Internal("write after commit");
  const uint8_t* p = static_cast<const uint8_t*>(data);
  pos_ += n;
  while (n > 0) {
    std::vector<uint8_t>& buf = first_.size() < kPartBytes ? first_ : current_;
    const uint64_t k = std::min<uint64_t>(n, kPartBytes - buf.size());
    buf.insert(buf.end(), p, p + k);
    p += k, n -= k;
    if (&buf == &current_ && current_.size() == kPartBytes) {
      if (upload_id_.empty()) MQKV_RETURN_IF_ERROR(Start());
      MQKV_RETURN_IF_ERROR(PutPart(int(etags_.size()) + 1, current_));
      current_.clear();
    }
  }
  return Status::OK();
}

Status S3Upload::WriteAt(uint64_t offset, const void* data, uint64_t n) {
  if (offset > first_.size() || n > first_.size() - offset)
    return Internal("WriteAt outside the first part of an S3 upload (held until commit)");
  std::memcpy(first_.data() + offset, data, n);
  return Status::OK();
}

Status S3Upload::Commit() {
  if (!sticky_.ok()) return sticky_;
  if (upload_id_.empty() && current_.empty()) {  // one part or less: a single atomic PUT
    HttpRequest req;
    req.method = "PUT";
    req.body = first_.data();
    req.body_size = first_.size();
    MQKV_ASSIGN_OR_RETURN(HttpResponse r, http_->Send(req));
    if (r.status != 200) return Fail(http_->Unexpected("PUT", r));
    committed_ = true;
    return Status::OK();
  }
  if (upload_id_.empty()) MQKV_RETURN_IF_ERROR(Start());
  if (!current_.empty()) MQKV_RETURN_IF_ERROR(PutPart(int(std::max<size_t>(etags_.size(), 1)) + 1, current_));
  MQKV_RETURN_IF_ERROR(PutPart(1, first_));
  std::string xml = "<CompleteMultipartUpload>";
  for (size_t k = 0; k < etags_.size(); ++k)
    xml += "<Part><PartNumber>" + std::to_string(k + 1) + "</PartNumber><ETag>" + etags_[k] + "</ETag></Part>";
  xml += "</CompleteMultipartUpload>";
  HttpRequest req;
  req.method = "POST";
  req.query = "uploadId=" + upload_id_;
  req.body = reinterpret_cast<const uint8_t*>(xml.data());
  req.body_size = xml.size();
  MQKV_ASSIGN_OR_RETURN(HttpResponse r, http_->Send(req));
  // S3 may answer 200 and still fail: the error is then in the body.
  if (r.status != 200 || r.text.find("<Error>") != std::string::npos)
    return Fail(http_->Unexpected("CompleteMultipartUpload", r));
  committed_ = true;
  return Status::OK();
}

}  // namespace

Result<std::shared_ptr<ByteSource>> OpenRemoteSource(const std::string& url, const RemoteOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(RemoteUrl u, ResolveUrl(url));
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> http, HttpClient::Create(std::move(u), opts));
  auto src = std::make_shared<RemoteSource>(std::move(http), opts);
  MQKV_RETURN_IF_ERROR(src->Open());
  return std::shared_ptr<ByteSource>(std::move(src));
}

Result<std::unique_ptr<OutputFile>> CreateS3Upload(const std::string& url, const RemoteOptions& opts) {
  MQKV_ASSIGN_OR_RETURN(RemoteUrl u, ResolveUrl(url));
  if (!u.s3) {
    Status s = Unsupported("cannot write to an http(s) URL (plain HTTP has no atomic upload): use s3://BUCKET/KEY");
    s.WithFile(u.name);
    return s;
  }
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> http, HttpClient::Create(std::move(u), opts));
  return std::unique_ptr<OutputFile>(new S3Upload(std::move(http)));
}

}  // namespace mqkv::io

namespace mqkv {

bool IsUrl(const std::string& p) {
  return p.rfind("s3://", 0) == 0 || p.rfind("http://", 0) == 0 || p.rfind("https://", 0) == 0;
}

Result<std::shared_ptr<ByteSource>> OpenSource(const std::string& path_or_url, const RemoteOptions& remote) {
  if (IsUrl(path_or_url)) return io::OpenRemoteSource(path_or_url, remote);
  return io::OpenLocalSource(path_or_url);
}

}  // namespace mqkv

namespace mqkv::io {

Result<std::unique_ptr<OutputFile>> CreateOutput(const std::string& path_or_url, bool fsync) {
  if (IsUrl(path_or_url)) return CreateS3Upload(path_or_url, RemoteOptions{});
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFile> f, AtomicFile::Create(path_or_url, fsync));
  return std::unique_ptr<OutputFile>(std::move(f));
}

}  // namespace mqkv::io
