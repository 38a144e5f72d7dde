#include "tool.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

#include "adapters/json.h"

namespace mqkv::tool {

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk: return kExitOk;
    case StatusCode::kInvalidArgument: return kExitUsage;
    case StatusCode::kFormatError:
    case StatusCode::kUnsupported:
    case StatusCode::kOutOfRange: return kExitBadInput;
    case StatusCode::kChecksumMismatch: return kExitVerify;
    case StatusCode::kIoError: return kExitIo;
    case StatusCode::kInternal: return kExitInternal;
  }
  return kExitInternal;
}

int Fail(std::string_view prog, const Status& s) {
  std::string line = std::string(prog) + ": " + Printable(s.ToString());
  std::fprintf(stderr, "%s\n", line.c_str());
  return ExitCodeFor(s);
}

int Run(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  app.set_version_flag("--version", std::string(app.get_name()) + " (mqkv) " MQKV_VERSION_STRING ", format " +
                                        std::to_string(kFormatMajor) + "." + std::to_string(kFormatMinor));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\nRun with --help for usage.\n", app.get_name().c_str(), e.what());
    return kExitUsage;
  }
  // The library never prints; what it could not follow from the environment is said here.
  if (const std::string w = SimdEnvWarning(); !w.empty()) std::fprintf(stderr, "%s: warning: %s\n", app.get_name().c_str(), w.c_str());
  try {
    return body();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory\n", app.get_name().c_str());
    return kExitInternal;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", app.get_name().c_str(), e.what());
    return kExitInternal;
  }
}

// The library's one JSON string quoter (lib/src/adapters/json.cpp), so a tool's JSON and a
// safetensors header escape the same bytes the same way.
std::string JsonString(std::string_view s) { return json::Quote(s); }

std::string Printable(std::string_view s) {
  std::string o;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      o += buf;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o;
}

std::string JsonNumber(double v) { return json::Number(v); }

Progress::Progress(std::string label, uint64_t total) : label_(std::move(label)), total_(total), tty_(isatty(2)) {}
Progress::~Progress() {
  if (tty_ && last_pct_ >= 0) std::fprintf(stderr, "\r%s: done%20s\n", label_.c_str(), "");
}
void Progress::Update(uint64_t done) {
  if (!tty_ || total_ == 0) return;
  int pct = static_cast<int>(done * 100 / total_);
  if (pct == last_pct_) return;
  last_pct_ = pct;
  std::fprintf(stderr, "\r%s: %3d%% (%llu/%llu)", label_.c_str(), pct, (unsigned long long)done, (unsigned long long)total_);
  std::fflush(stderr);
}

}  // namespace mqkv::tool
