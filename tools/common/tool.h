// What the command-line tools share: exit codes, one-line errors, JSON and terminal escaping,
// and a progress line. Exit codes are documented in README.md ("Exit codes").
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "mqkv/mqkv.h"

namespace mqkv::tool {

enum Exit : int {
  kExitOk = 0,
  kExitUsage = 2,      // bad command line, bad codec spec
  kExitBadInput = 3,   // malformed or unsupported input file
  kExitVerify = 4,     // checksum mismatch, backend disagreement, fidelity/accounting check failed
  kExitIo = 5,         // cannot open, read, write or rename
  kExitInternal = 6,
};

int ExitCodeFor(const Status& s);
// Prints "PROG: FILE: at byte N: REASON" on one line of stderr; returns the exit code.
int Fail(std::string_view prog, const Status& s);

// Runs a CLI11 app: --version added, parse errors to exit 2, exceptions caught.
int Run(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

// Quote a string for JSON output (control characters escaped, UTF-8 passed through).
std::string JsonString(std::string_view s);
// Make a string from a file safe to print on a terminal: control characters as \xNN.
std::string Printable(std::string_view s);
std::string JsonNumber(double v);

// A "\r"-updated progress line on stderr, shown only when stderr is a terminal.
class Progress {
 public:
  Progress(std::string label, uint64_t total);
  ~Progress();
  void Update(uint64_t done);

 private:
  std::string label_;
  uint64_t total_;
  bool tty_;
  int last_pct_ = -1;
};

}  // namespace mqkv::tool
