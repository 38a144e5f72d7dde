// Issue 14, item 1: numbers in codec spec strings and interop metadata do not depend on the C
// locale. A program embedding libmqkv may call setlocale(LC_ALL, "de_DE.UTF-8") (comma decimals);
// the footer must still say "1.85", and "1.85" must still parse.
#include <gtest/gtest.h>

#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;

namespace {

// Switches LC_ALL to a comma-decimal locale: the installed de_DE.UTF-8, or one compiled here with
// localedef into the build folder (glibc reads LOCPATH). Empty when neither works.
std::string UseCommaLocale() {
  for (const char* name : {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8"})
    if (std::setlocale(LC_ALL, name)) return name;
  const std::string dir = std::string(MQKV_BINARY_DIR) + "/locale";
  const std::string cmd = "mkdir -p '" + dir + "' && localedef -i de_DE -f UTF-8 '" + dir + "/de_DE.UTF-8' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) == 0 || std::system(("test -d '" + dir + "/de_DE.UTF-8'").c_str()) == 0) {
    setenv("LOCPATH", dir.c_str(), 1);
    if (std::setlocale(LC_ALL, "de_DE.UTF-8")) return "de_DE.UTF-8 (localedef, LOCPATH)";
  }
  return "";
}

struct RestoreLocale {
  ~RestoreLocale() { std::setlocale(LC_ALL, "C"); }
};

}  // namespace

TEST(Locale, CommaDecimalLocaleChangesNothing) {
  RestoreLocale restore;
  const std::string name = UseCommaLocale();
  if (name.empty()) GTEST_SKIP() << "no comma-decimal locale: install Debian's 'locales' (localedef -i de_DE -f UTF-8)";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%g", 1.5);
  ASSERT_STREQ(buf, "1,5") << "locale " << name << " is not a comma-decimal locale";

  auto s = CodecSpec::Parse("codebook:bits=2,levels=-1.85/-0.55/0.55/1.85,thresholds=-0.75/0/0.75");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_FLOAT_EQ(s->levels[0], -1.85f);
  EXPECT_EQ(s->ToString(), "codebook:bits=2,group=0,axis=token,levels=-1.85/-0.55/0.55/1.85,thresholds=-0.75/0/0.75,scale=absmax");
  EXPECT_FALSE(CodecSpec::Parse("codebook:bits=1,levels=-1,5/1,5").ok());

  // Through the container: the footer's codec string, and a rope_base written as interop metadata.
  mqkv::testing::TempDir dir;
  KvSet set;
  set.model.architecture = "llama";
  set.model.n_layer = 1;
  set.model.n_head = set.model.n_head_kv = 1;
  set.model.head_dim_k = set.model.head_dim_v = 8;
  set.model.rope_base = 10000.5f;
  for (Kind k : {Kind::kK, Kind::kV}) {
    KvTensor t;
    t.desc.kind = k;
    t.desc.n_heads = 1;
    t.desc.head_dim = 8;
    t.desc.n_tokens = 4;
    t.data = mqkv::testing::RandomRows(32, 3 + uint32_t(k));
    set.tensors.push_back(std::move(t));
  }
  WriteOptions o;
  o.k_codec = o.v_codec = *s;
  o.writer.fsync = false;
  const std::string path = dir.Path("l.mqkv"), st = dir.Path("l.safetensors");
  ASSERT_TRUE(WriteKvSet(set, path, FileFormat::kMqkv, o).ok());
  auto snap = Snapshot::Open(path);
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ((*snap)->tensors()[0].codec, s->ToString());
  ASSERT_TRUE(WriteKvSet(set, st, FileFormat::kSafetensors, {}).ok());
  const std::vector<uint8_t> bytes = mqkv::testing::ReadFile(st);
  const std::string text(bytes.begin(), bytes.end());
  EXPECT_NE(text.find("\"10000.5\""), std::string::npos) << "rope_base not written as 10000.5";
  auto back = ReadKvSet(st, FileFormat::kSafetensors, {});
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->model.rope_base, 10000.5f);
}
