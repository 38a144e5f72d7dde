// A tiny HTTP/1.1 object server on 127.0.0.1 (a free port) for the remote-I/O tests: it serves one
// object with ETag and Range support (a-b, a-, -n) and injects the faults the client must survive
// or report: 5xx answers, bodies cut short, wrong Content-Range, a dropped connection, a replaced
// object, fixed error statuses. It is a test fixture only; the library's client is libcurl.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mqkv::testing {

class HttpObjectServer {
 public:
  explicit HttpObjectServer(std::vector<uint8_t> object);
  ~HttpObjectServer();  // stops the accept loop and joins every thread
  std::string Url(const std::string& path = "/obj.mqkv") const;

  // Replace the object (a new ETag), as a writer replacing the key would.
  void Replace(std::vector<uint8_t> object);
  // Faults, each applied to the next N GET requests.
  std::atomic<int> fail_500{0};          // answer 503
  std::atomic<int> truncate{0};          // declare the full length, send half, close
  std::atomic<int> wrong_range{0};       // 206 with a Content-Range one byte off
  std::atomic<int> drop{0};              // close the connection without answering
  std::atomic<int> status_override{0};   // answer this status (e.g. 403, 404) to every request
  std::atomic<bool> ignore_range{false}; // answer 200 with the whole object
  std::atomic<bool> no_etag{false};

  struct Seen {
    std::string method, range, if_match, authorization;
  };
  std::vector<Seen> requests() const;
  size_t gets() const;
  uint64_t body_bytes_sent() const { return sent_; }

 private:
  void Serve(int fd);
  void AcceptLoop();
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<int> conns_;
  std::vector<uint8_t> object_;
  std::string etag_;
  int version_ = 0;
  std::vector<Seen> seen_;
  std::atomic<uint64_t> sent_{0};
};

}  // namespace mqkv::testing
