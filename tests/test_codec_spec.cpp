// Codec spec strings: every canonical string parses back to an equal spec (the property the
// spec-parser fuzz target checks), and misuse is a clear error.
#include <gtest/gtest.h>

#include "mqkv/codec.h"

using namespace mqkv;

TEST(CodecSpec, CanonicalStringsRoundTrip) {
  std::vector<std::string> texts = PresetNames();
  for (const char* t : {"f32", "f16", "bf16", "affine:bits=3,group=64,meta=4,rotate=hadamard,sinks=1",
                        "affine:bits=8,group=0,axis=channel,residual=128", "affine:bits=2,rotate=hadamard,seed=7",
                        "codebook:bits=2,levels=-1.85/-0.55/0.55/1.85,thresholds=-0.75/0/0.75,scale=robust,axis=channel",
                        "codebook:bits=1,levels=-0.1/0.30000001", "fp8",
                        "codebook:bits=3,group=16,levels=-3/-2/-1/-0.5/0.5/1/2/3,scale=rms,rotate=hadamard,seed=9"})
    texts.push_back(t);
  for (const std::string& t : texts) {
    auto s = CodecSpec::Parse(t);
    ASSERT_TRUE(s.ok()) << t << ": " << s.status().ToString();
    auto again = CodecSpec::Parse(s->ToString());
    ASSERT_TRUE(again.ok()) << s->ToString();
    EXPECT_EQ(*again, *s) << t << " -> " << s->ToString();
  }
}

TEST(CodecSpec, MisuseIsAClearError) {
  for (auto [text, needle] : std::vector<std::pair<std::string, std::string>>{
           {"affine:bits=3,seed=7", "seed applies to rotate=hadamard"},
           {"affine:bits=5", "expected 2, 3, 4 or 8"},
           {"affine:bits=3,bits=3", "given twice"},
           {"affine:meta=6", "meta=6"},
           {"codebook:bits=2,levels=1/2/3", "needs 4 levels"},
           {"codebook:bits=1,levels=2/1", "ascending"},
           {"f16:bits=3", "takes no options"},
           {"fp8:scale=absmax", "takes no options"},
           {"codebook:bits=1,levels=-1/1,scale=norm", "absmax, robust or rms"},
           {"zzz", "unknown codec"},
           {"affine:axis=diagonal", "token or channel"}}) {
    auto s = CodecSpec::Parse(text);
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(needle), std::string::npos) << text << ": " << s.status().message();
  }
}
