// URL resolution and one HTTP request with bounded retries, over libcurl (spec/REMOTE.md).
// Signing is libcurl's (CURLOPT_AWS_SIGV4); the payload hash it signs is the SHA-256 of the body
// (OpenSSL), sent as x-amz-content-sha256 as S3 requires.
#include <curl/curl.h>
#include <openssl/sha.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "remote.h"

namespace mqkv::io {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return s;
}

// S3 object keys are URI-encoded per path segment: unreserved characters stay, '/' separates.
std::string EncodeKey(const std::string& key) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : key) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
        c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

Status UrlError(const std::string& url, const std::string& why) {
  Status s = InvalidArgument(why);
  s.WithFile(url);
  return s;
}

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Sha256Hex(const uint8_t* p, uint64_t n) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(p ? p : reinterpret_cast<const uint8_t*>(""), n, md);
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : md) {
    s += hex[c >> 4];
    s += hex[c & 15];
  }
  return s;
}

struct Transfer {
  const HttpRequest* req;
  HttpResponse* resp;
  bool overflow = false;
};

size_t OnBody(char* p, size_t one, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const uint64_t len = uint64_t(one) * n;
  if (t->req->dst) {
    if (t->resp->received + len > t->req->dst_size) {
      t->overflow = true;
      return 0;  // aborts the transfer: more bytes than the range asked for
    }
    std::memcpy(t->req->dst + t->resp->received, p, len);
  } else {
    if (t->resp->text.size() + len > t->req->text_limit) {
      t->overflow = true;
      return 0;
    }
    t->resp->text.append(p, len);
  }
  t->resp->received += len;
  return len;
}

size_t OnHeader(char* p, size_t one, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = one * n;
  std::string line(p, len);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (after 100 Continue or a redirect)
    t->resp->etag.clear();
    t->resp->content_range.clear();
    return len;
  }
  const auto colon = line.find(':');
  if (colon == std::string::npos) return len;
  const std::string name = Lower(line.substr(0, colon));
  std::string value = line.substr(colon + 1);
  value.erase(0, value.find_first_not_of(" \t"));
  if (name == "etag") t->resp->etag = value;
  if (name == "content-range") t->resp->content_range = value;
  return len;
}

bool RetryableCurl(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace

Result<RemoteUrl> ResolveUrl(const std::string& url) {
  RemoteUrl u;
  if (url.rfind("s3://", 0) == 0) {
    u.s3 = true;
    const std::string rest = url.substr(5);
    const auto slash = rest.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size())
      return UrlError(url, "an s3 URL is s3://BUCKET/KEY");
    u.bucket = rest.substr(0, slash);
    u.key = rest.substr(slash + 1);
    u.name = url;
    u.region = Env("AWS_REGION");
    if (u.region.empty()) u.region = Env("AWS_DEFAULT_REGION");
    if (u.region.empty()) u.region = "us-east-1";
    std::string endpoint = Env("AWS_ENDPOINT_URL_S3");
    if (endpoint.empty()) endpoint = Env("AWS_ENDPOINT_URL");
    const bool custom = !endpoint.empty();
    if (!custom) endpoint = "https://s3." + u.region + ".amazonaws.com";
    while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
    if (endpoint.rfind("http://", 0) != 0 && endpoint.rfind("https://", 0) != 0)
      return UrlError(url, "AWS_ENDPOINT_URL must start with http:// or https:// (is \"" + endpoint + "\")");
    const std::string style = Env("MQKV_S3_ADDRESSING");
    if (!style.empty() && style != "path" && style != "virtual")
      return UrlError(url, "MQKV_S3_ADDRESSING must be \"path\" or \"virtual\" (is \"" + style + "\")");
    const bool path_style = style.empty() ? custom : style == "path";
    if (path_style) {
      u.http_url = endpoint + "/" + EncodeKey(u.bucket) + "/" + EncodeKey(u.key);
    } else {
      const auto scheme_end = endpoint.find("://") + 3;
      u.http_url = endpoint.substr(0, scheme_end) + u.bucket + "." + endpoint.substr(scheme_end) + "/" + EncodeKey(u.key);
    }
    u.access_key = Env("AWS_ACCESS_KEY_ID");
    u.secret_key = Env("AWS_SECRET_ACCESS_KEY");
    u.session_token = Env("AWS_SESSION_TOKEN");
    if (u.access_key.empty() != u.secret_key.empty())
      return UrlError(url, "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or neither, for a public bucket)");
    return u;
  }
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    return UrlError(url, "not a URL (s3://, http:// or https://)");
  u.http_url = url;
  u.name = url;
  // Never keep user:password@ in a name that reaches a message.
  const auto scheme_end = url.find("://") + 3;
  const auto path_at = url.find('/', scheme_end);
  const auto at = url.rfind('@', path_at == std::string::npos ? url.size() : path_at);
  if (at != std::string::npos && at >= scheme_end) u.name = url.substr(0, scheme_end) + url.substr(at + 1);
  return u;
}

Result<std::unique_ptr<HttpClient>> HttpClient::Create(RemoteUrl url, const RemoteOptions& opts) {
  GlobalInit();
  std::unique_ptr<HttpClient> c(new HttpClient());
  c->url_ = std::move(url);
  c->opts_ = opts;
  c->curl_ = curl_easy_init();
  if (!c->curl_) return IoError("libcurl could not create a handle").WithFile(c->url_.name);
  return c;
}

HttpClient::~HttpClient() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Status HttpClient::Unexpected(const std::string& what, const HttpResponse& r) const {
  std::string why;
  switch (r.status) {
    case 401:
    case 403: why = "access denied (HTTP " + std::to_string(r.status) + "): check the credentials and the bucket's policy"; break;
    case 404: why = "no such object (HTTP 404)"; break;
    case 412: why = "the object changed since it was opened (HTTP 412: its ETag is no longer " + r.etag + ")"; break;
    case 416: why = "range not satisfiable (HTTP 416)"; break;
    default: why = "unexpected HTTP " + std::to_string(r.status);
  }
  // An S3 error document names the error; keep its <Code> (never the request's signature).
  const auto a = r.text.find("<Code>"), b = r.text.find("</Code>");
  if (a != std::string::npos && b != std::string::npos && b > a) why += " [" + r.text.substr(a + 6, b - a - 6) + "]";
  Status s = IoError(what + ": " + why);
  s.WithFile(url_.name);
  return s;
}

Result<HttpResponse> HttpClient::Attempt(const HttpRequest& req, bool* retry) {
  CURL* h = static_cast<CURL*>(curl_);
  curl_easy_reset(h);
  HttpResponse resp;
  Transfer t{&req, &resp};
  const std::string full = req.query.empty() ? url_.http_url : url_.http_url + "?" + req.query;
  curl_easy_setopt(h, CURLOPT_URL, full.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opts_.connect_timeout_ms);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, opts_.low_speed_timeout_s);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "mqkv");
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);  // fewer body callbacks on large ranges
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_slist* headers = nullptr;
  for (const std::string& x : req.headers) headers = curl_slist_append(headers, x.c_str());
  if (req.method == "GET") {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    if (req.body || req.method == "POST" || req.method == "PUT") {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body ? reinterpret_cast<const char*>(req.body) : "");
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body_size));
      headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    }
  }
  if (url_.s3 && !url_.access_key.empty()) {
    const std::string sigv4 = "aws:amz:" + url_.region + ":s3";
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, url_.access_key.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, url_.secret_key.c_str());
    headers = curl_slist_append(headers, ("x-amz-content-sha256: " + Sha256Hex(req.body, req.body_size)).c_str());
    if (!url_.session_token.empty())
      headers = curl_slist_append(headers, ("x-amz-security-token: " + url_.session_token).c_str());
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  ++requests_;
  const CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(headers);
  bytes_ += resp.received;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
  *retry = false;
  if (t.overflow) {
    Status s = IoError(req.method + ": the server sent more bytes than were asked for (" +
                       std::to_string(req.dst ? req.dst_size : req.text_limit) + ")");
    s.WithFile(url_.name);
    return s;
  }
  if (rc != CURLE_OK) {
    *retry = RetryableCurl(rc);
    Status s = IoError(req.method + " failed: " + curl_easy_strerror(rc));
    s.WithFile(url_.name);
    return s;
  }
  if (resp.status == 429 || resp.status >= 500) {
    *retry = true;
    return Unexpected(req.method, resp);
  }
  if (req.dst && resp.status / 100 == 2 && resp.received != req.dst_size) {
    *retry = true;  // a body cut short without the connection failing
    Status s = IoError(req.method + ": the response body has " + std::to_string(resp.received) + " of the " +
                       std::to_string(req.dst_size) + " bytes asked for");
    s.WithFile(url_.name);
    return s;
  }
  return resp;
}

Result<HttpResponse> HttpClient::Send(const HttpRequest& req) {
  long backoff = opts_.backoff_ms;
  for (int attempt = 1;; ++attempt) {
    bool retry = false;
    Result<HttpResponse> r = Attempt(req, &retry);
    if (r.ok() || !retry || attempt >= std::max(1, opts_.max_attempts)) {
      if (!r.ok() && retry) {
        Status s = r.status();
        return s.Prepend("after " + std::to_string(attempt) + " attempts");
      }
      return r;
    }
    ++retries_;
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
    backoff *= 2;
  }
}

}  // namespace mqkv::io
