#include "http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace mqkv::testing {
namespace {

bool SendAll(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t k = ::send(fd, c, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    c += k, n -= size_t(k);
  }
  return true;
}

std::string Header(const std::string& head, const char* name) {
  std::string lower = head;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const std::string key = std::string("\r\n") + name + ":";
  const auto at = lower.find(key);
  if (at == std::string::npos) return "";
  auto v = at + key.size();
  while (v < head.size() && head[v] == ' ') ++v;
  return head.substr(v, head.find("\r\n", v) - v);
}

}  // namespace

HttpObjectServer::HttpObjectServer(std::vector<uint8_t> object) {
  Replace(std::move(object));
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // loopback only
  a.sin_port = 0;                              // a free port
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 16) != 0)
    throw std::runtime_error("test server: cannot listen on 127.0.0.1");
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

HttpObjectServer::~HttpObjectServer() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : conns_) ::shutdown(fd, SHUT_RDWR);
  }
  for (std::thread& t : workers_) t.join();
  for (int fd : conns_) ::close(fd);
}

std::string HttpObjectServer::Url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void HttpObjectServer::Replace(std::vector<uint8_t> object) {
  std::lock_guard<std::mutex> lock(mu_);
  object_ = std::move(object);
  etag_ = "\"v" + std::to_string(++version_) + "-" + std::to_string(object_.size()) + "\"";
}

std::vector<HttpObjectServer::Seen> HttpObjectServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_;
}

size_t HttpObjectServer::gets() const {
  size_t n = 0;
  for (const Seen& s : requests()) n += s.method == "GET";
  return n;
}

void HttpObjectServer::AcceptLoop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    conns_.push_back(fd);
    workers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void HttpObjectServer::Serve(int fd) {
  std::string buf;
  char tmp[4096];
  while (!stop_) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      ssize_t k = ::recv(fd, tmp, sizeof tmp, 0);
      if (k <= 0) return;  // closed by the destructor
      buf.append(tmp, size_t(k));
    }
    const std::string head = "\r\n" + buf.substr(0, end + 2);
    buf.erase(0, end + 4);
    Seen s;
    s.method = head.substr(2, head.find(' ', 2) - 2);
    s.range = Header(head, "range");
    s.if_match = Header(head, "if-match");
    s.authorization = Header(head, "authorization");
    std::vector<uint8_t> obj;
    std::string etag;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.push_back(s);
      obj = object_;
      etag = etag_;
    }
    auto answer = [&](int code, const std::string& reason, const std::string& extra, const uint8_t* body, size_t n, size_t send_n) {
      std::string h = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Length: " + std::to_string(n) + "\r\n" + extra;
      if (!no_etag) h += "ETag: " + etag + "\r\n";
      h += "\r\n";
      bool ok = SendAll(fd, h.data(), h.size());
      if (ok && send_n && s.method != "HEAD") {
        ok = SendAll(fd, body, send_n);
        if (ok) sent_ += send_n;
      }
      return ok;
    };
    if (drop > 0 && drop-- > 0) break;
    if (int st = status_override.load()) {
      const std::string body = "<Error><Code>Test" + std::to_string(st) + "</Code></Error>";
      if (!answer(st, "Error", "", reinterpret_cast<const uint8_t*>(body.data()), body.size(), body.size())) break;
      continue;
    }
    if (fail_500 > 0 && fail_500-- > 0) {
      if (!answer(503, "Slow Down", "", nullptr, 0, 0)) break;
      continue;
    }
    if (!s.if_match.empty() && s.if_match != etag) {
      if (!answer(412, "Precondition Failed", "", nullptr, 0, 0)) break;
      continue;
    }
    uint64_t a = 0, b = obj.empty() ? 0 : obj.size() - 1;
    bool ranged = false;
    if (!s.range.empty() && !ignore_range) {
      unsigned long long x = 0, y = 0;
      if (std::sscanf(s.range.c_str(), "bytes=-%llu", &x) == 1) {
        a = x >= obj.size() ? 0 : obj.size() - x;
      } else if (std::sscanf(s.range.c_str(), "bytes=%llu-%llu", &x, &y) == 2) {
        a = x, b = std::min<uint64_t>(y, obj.size() - 1);
      } else if (std::sscanf(s.range.c_str(), "bytes=%llu-", &x) == 1) {
        a = x;
      }
      ranged = true;
      if (obj.empty() || a > b) {
        if (!answer(416, "Range Not Satisfiable", "Content-Range: bytes */" + std::to_string(obj.size()) + "\r\n", nullptr, 0, 0)) break;
        continue;
      }
    }
    const size_t n = obj.empty() ? 0 : size_t(b - a + 1);
    std::string extra;
    if (ranged) {
      const uint64_t shift = (wrong_range > 0 && wrong_range-- > 0) ? 1 : 0;
      extra = "Content-Range: bytes " + std::to_string(a + shift) + "-" + std::to_string(b + shift) + "/" + std::to_string(obj.size()) + "\r\n";
    }
    if (truncate > 0 && truncate-- > 0) {
      answer(ranged ? 206 : 200, ranged ? "Partial Content" : "OK", extra, obj.data() + a, n, n / 2);
      break;  // close with the body cut short
    }
    if (!answer(ranged ? 206 : 200, ranged ? "Partial Content" : "OK", extra, obj.data() + a, n, n)) break;
  }
  ::shutdown(fd, SHUT_RDWR);
}

}  // namespace mqkv::testing
