// Remote objects over HTTP(S) through libcurl (spec/REMOTE.md): URL resolution (s3:// through the
// conventional AWS variables), one request with bounded retries, the ranged-read ByteSource and
// the S3 multipart upload behind OutputFile. Credentials are never part of a message.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io.h"
#include "mqkv/io.h"
#include "mqkv/status.h"

namespace mqkv::io {

struct RemoteUrl {
  std::string name;       // as the user wrote it, minus any user:password@ (for messages)
  std::string http_url;   // the object's http(s) URL (path-style or virtual-hosted for S3)
  bool s3 = false;
  std::string bucket, key;
  std::string region;     // s3: AWS_REGION / AWS_DEFAULT_REGION, default us-east-1
  std::string access_key, secret_key, session_token;  // s3: from the environment; empty = unsigned
};

// s3://bucket/key (endpoint AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, default
// https://s3.REGION.amazonaws.com; addressing MQKV_S3_ADDRESSING=path|virtual, default path when
// an endpoint is given and virtual-hosted for AWS), http://..., https://...
Result<RemoteUrl> ResolveUrl(const std::string& url);

struct HttpRequest {
  std::string method = "GET";
  std::string query;                 // appended to the object URL after '?', e.g. "uploads"
  std::vector<std::string> headers;  // "Name: value"
  const uint8_t* body = nullptr;     // request body (PUT/POST), sent from these bytes
  uint64_t body_size = 0;
  uint8_t* dst = nullptr;            // response body goes here (exactly dst_size bytes expected)
  uint64_t dst_size = 0;             // when dst is null the body is kept in HttpResponse::text,
  uint64_t text_limit = 1 << 20;     // up to this many bytes (more is an error)
};

struct HttpResponse {
  long status = 0;
  std::string etag, content_range, text;
  uint64_t received = 0;
};

// One connection (kept alive) to one object. Send() makes up to max_attempts attempts: it retries
// connection failures, timeouts, dropped or short bodies, 429 and 5xx answers, with backoff, and
// returns any other answer to the caller.
class HttpClient {
 public:
  static Result<std::unique_ptr<HttpClient>> Create(RemoteUrl url, const RemoteOptions& opts);
  ~HttpClient();
  Result<HttpResponse> Send(const HttpRequest& req);
  const RemoteUrl& url() const { return url_; }
  IoStats stats() const { return IoStats{requests_.load(), bytes_.load(), retries_.load()}; }
  // An error for an answer the caller did not expect, naming the object and the request.
  Status Unexpected(const std::string& what, const HttpResponse& r) const;

 private:
  HttpClient() = default;
  Result<HttpResponse> Attempt(const HttpRequest& req, bool* retry);
  RemoteUrl url_;
  RemoteOptions opts_;
  void* curl_ = nullptr;
  // Counters read by other threads while a transfer runs (IoStats while in flight).
  std::atomic<uint64_t> requests_{0}, bytes_{0}, retries_{0};
};

Result<std::shared_ptr<ByteSource>> OpenRemoteSource(const std::string& url, const RemoteOptions& opts);
Result<std::unique_ptr<OutputFile>> CreateS3Upload(const std::string& url, const RemoteOptions& opts);

}  // namespace mqkv::io
