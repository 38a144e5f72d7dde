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

// Issue 14, item 1: the canonical string of every preset, byte for byte (spec/CODECS.md,
// "Canonical spec strings"): key order, which defaults are printed, shortest round-trip decimals.
TEST(CodecSpec, CanonicalFormIsExact) {
  for (auto [in, want] : std::vector<std::pair<std::string, std::string>>{
           {"f16", "f16"},
           {"fp8", "fp8"},
           {"affine_seven_level_3bit_g64_meta4", "affine:bits=3,group=64,meta=4,axis=token"},
           {"affine:rotate=hadamard,bits=2,meta=8,group=64", "affine:bits=2,group=64,meta=8,axis=token,rotate=hadamard,seed=1836149622"},
           {"ggml_q4_0", "affine:bits=4,group=32,meta=16,rule=q4_0,axis=token"},
           {"affine:bits=4,rule=minmax", "affine:bits=4,group=0,meta=16,axis=token"},
           {"kivi2_k", "affine:bits=2,group=32,meta=16,axis=channel,residual=128"},
           {"turbo2", "codebook:bits=2,group=0,axis=token,levels=-1.510418/-0.45278/0.45278/1.510418,scale=rms,rotate=hadamard,seed=1836149622"},
           {"sink1_channelwise_four_level_2bit",
            "codebook:bits=2,group=0,axis=channel,levels=-1.85/-0.55/0.55/1.85,thresholds=-0.75/0/0.75,scale=robust,sinks=1"},
           {"codebook:bits=1,levels=-0.0001/1e6", "codebook:bits=1,group=0,axis=token,levels=-0.0001/1e+06,scale=absmax"},
       }) {
    auto s = CodecSpec::Parse(in);
    ASSERT_TRUE(s.ok()) << in << ": " << s.status().ToString();
    EXPECT_EQ(s->ToString(), want) << in;
  }
  // The number grammar: no '+', no spaces, no hex, no comma decimals.
  for (const char* bad : {"codebook:bits=1,levels=+1/2", "codebook:bits=1,levels= 1/2", "codebook:bits=1,levels=0x1p0/2",
                          "codebook:bits=1,levels=1,5/2"})
    EXPECT_FALSE(CodecSpec::Parse(bad).ok()) << bad;
}
