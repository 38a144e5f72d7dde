// Codec spec strings and presets (spec/CODECS.md, "Spec strings" and "Presets").
#include <charconv>
#include <cmath>
#include <map>

#include "mqkv/codec.h"
#include "util/text.h"

namespace mqkv {
namespace {

struct Preset {
  const char* name;
  const char* spec;
};

// The proof-of-concept's method names (shared/notes/research-background.md), KIVI and the
// TurboQuant-style family.
constexpr Preset kPresets[] = {
    {"affine_seven_level_3bit_g64_meta4", "affine:bits=3,group=64,meta=4"},
    {"affine_seven_level_3bit_g32", "affine:bits=3,group=32"},
    {"hadamard_affine_four_level_2bit_g64_meta8", "affine:bits=2,group=64,meta=8,rotate=hadamard"},
    {"hadamard_affine_four_level_2bit_g32", "affine:bits=2,group=32,rotate=hadamard"},
    {"sink1_channelwise_four_level_2bit",
     "codebook:bits=2,axis=channel,group=0,levels=-1.85/-0.55/0.55/1.85,thresholds=-0.75/0/0.75,scale=robust,sinks=1"},
    // KIVI (arXiv 2402.02750): keys per channel, values per token, group 32, last 128 rows fp16.
    {"kivi2_k", "affine:bits=2,group=32,axis=channel,residual=128"},
    {"kivi2_v", "affine:bits=2,group=32,residual=128"},
    {"kivi4_k", "affine:bits=4,group=32,axis=channel,residual=128"},
    {"kivi4_v", "affine:bits=4,group=32,residual=128"},
    // TurboQuant-style (Zandieh et al. 2025, MSE variant without the QJL stage; spec/CODECS.md
    // "TurboQuant-style presets"): Hadamard rotation with random signs, one scale per head vector
    // s = rms = ||x|| / sqrt(d), Lloyd-Max levels of N(0, 1) (thresholds: the midpoints, Lloyd-Max's
    // decision boundaries). Levels from Lloyd's algorithm on the exact Gaussian, to 6 decimals.
    {"turbo2", "codebook:bits=2,rotate=hadamard,scale=rms,levels=-1.510418/-0.452780/0.452780/1.510418"},
    {"turbo3",
     "codebook:bits=3,rotate=hadamard,scale=rms,levels=-2.151946/-1.343909/-0.756005/-0.245094/0.245094/0.756005/1.343909/"
     "2.151946"},
    {"turbo4",
     "codebook:bits=4,rotate=hadamard,scale=rms,levels=-2.732590/-2.069017/-1.618046/-1.256231/-0.942340/-0.656759/-0.388048/"
     "-0.128395/0.128395/0.388048/0.656759/0.942340/1.256231/1.618046/2.069017/2.732590"},
    // llama.cpp's q4_0 / q8_0 cache types as affine blocks of 32 (spec/CODECS.md "ggml grids"): the
    // same scale and grid, plus an explicit fp16 minimum (1 bit/dim more than ggml's 4.5 / 8.5).
    {"ggml_q4_0", "affine:bits=4,group=32,rule=q4_0"},
    {"ggml_q8_0", "affine:bits=8,group=32,rule=q8_0"},
};

std::string FormatFloat(float f) { return text::ShortestFloat(f); }

Result<uint64_t> ParseUint(std::string_view key, std::string_view v, uint64_t max) {
  uint64_t x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || x > max)
    return InvalidArgument("codec option " + std::string(key) + "=" + std::string(v) + ": expected an integer 0.." + std::to_string(max));
  return x;
}

Result<std::vector<float>> ParseFloats(std::string_view key, std::string_view v) {
  std::vector<float> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find('/', start);
    if (end == std::string_view::npos) end = v.size();
    std::string item(v.substr(start, end - start));
    float f = 0;
    if (!text::ParseFloat(item, &f) || !std::isfinite(f))
      return InvalidArgument("codec option " + std::string(key) + ": \"" + item + "\" is not a finite number");
    out.push_back(f);
    start = end + 1;
  }
  return out;
}

std::string JoinFloats(const std::vector<float>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += '/';
    s += FormatFloat(v[i]);
  }
  return s;
}

// One key=value option of an affine or codebook spec string, applied to *s.
Status ApplyOption(CodecSpec* s, std::string_view name, const std::string& key, std::string_view v) {
  if (key == "bits") {
    MQKV_ASSIGN_OR_RETURN(uint64_t b, ParseUint(key, v, 8));
    s->bits = static_cast<uint8_t>(b);
  } else if (key == "group") {
    MQKV_ASSIGN_OR_RETURN(uint64_t g, ParseUint(key, v, 65535));
    s->group = static_cast<uint16_t>(g);
  } else if (key == "meta") {
    if (v == "fp16") v = "16";
    MQKV_ASSIGN_OR_RETURN(uint64_t m, ParseUint(key, v, 16));
    s->meta_bits = static_cast<uint8_t>(m);
  } else if (key == "axis") {
    if (v == "token") s->axis = GroupAxis::kToken;
    else if (v == "channel") s->axis = GroupAxis::kChannel;
    else return InvalidArgument("codec option axis=" + std::string(v) + ": expected token or channel");
  } else if (key == "rotate") {
    if (v == "none") s->rotation = Rotation::kNone;
    else if (v == "hadamard") s->rotation = Rotation::kHadamard;
    else return InvalidArgument("codec option rotate=" + std::string(v) + ": expected none or hadamard");
  } else if (key == "seed") {
    MQKV_ASSIGN_OR_RETURN(s->seed, ParseUint(key, v, UINT64_MAX));
  } else if (key == "sinks") {
    MQKV_ASSIGN_OR_RETURN(uint64_t n, ParseUint(key, v, UINT32_MAX));
    s->sinks = static_cast<uint32_t>(n);
  } else if (key == "residual") {
    MQKV_ASSIGN_OR_RETURN(uint64_t n, ParseUint(key, v, UINT32_MAX));
    s->residual = static_cast<uint32_t>(n);
  } else if (key == "prerope") {
    if (v == "1") s->prerope = true;
    else if (v == "0") s->prerope = false;
    else return InvalidArgument("codec option prerope=" + std::string(v) + ": expected 0 or 1");
  } else if (key == "rule" && s->codec == CodecId::kAffine) {
    if (v == "minmax") s->affine_rule = AffineRule::kMinMax;
    else if (v == "q4_0") s->affine_rule = AffineRule::kQ4_0;
    else if (v == "q8_0") s->affine_rule = AffineRule::kQ8_0;
    else return InvalidArgument("codec option rule=" + std::string(v) + ": expected minmax, q4_0 or q8_0");
  } else if (key == "entropy") {
    if (v == "none") s->entropy = Entropy::kNone;
    else if (v == "rans") s->entropy = Entropy::kRans;
    else return InvalidArgument("codec option entropy=" + std::string(v) + ": expected none or rans");
  } else if (key == "levels" && s->codec == CodecId::kAffine) {
    MQKV_ASSIGN_OR_RETURN(uint64_t n, ParseUint(key, v, 256));
    s->n_levels = static_cast<uint16_t>(n);
  } else if (key == "levels" && s->codec == CodecId::kCodebook) {
    MQKV_ASSIGN_OR_RETURN(s->levels, ParseFloats(key, v));
  } else if (key == "thresholds" && s->codec == CodecId::kCodebook) {
    MQKV_ASSIGN_OR_RETURN(s->thresholds, ParseFloats(key, v));
  } else if (key == "scale" && s->codec == CodecId::kCodebook) {
    if (v == "absmax") s->scale_rule = ScaleRule::kAbsMax;
    else if (v == "robust") s->scale_rule = ScaleRule::kRobust;
    else if (v == "rms") s->scale_rule = ScaleRule::kRms;
    else return InvalidArgument("codec option scale=" + std::string(v) + ": expected absmax, robust or rms");
  } else if (key == "fit" && s->codec == CodecId::kCodebook) {
    if (v == "lloyd") s->fit_lloyd = true;
    else if (v == "none") s->fit_lloyd = false;
    else return InvalidArgument("codec option fit=" + std::string(v) + ": expected lloyd or none");
  } else {
    return InvalidArgument("unknown option \"" + key + "\" for codec " + std::string(name));
  }
  return Status::OK();
}

// Parameter ranges of a parsed spec (the codec's PartSizes repeats these checks for headers read
// from files).
Status CheckRanges(const CodecSpec& s) {
  if (s.entropy == Entropy::kRans) {
    const size_t n = s.codec == CodecId::kAffine ? s.n_levels : s.levels.size();
    if (n < 3 || n > 256) return InvalidArgument("entropy=rans needs 3..256 levels, got " + std::to_string(n));
    if (s.affine_rule != AffineRule::kMinMax) return InvalidArgument("entropy=rans takes affine rule=minmax only");
  } else if (s.codec == CodecId::kAffine && s.n_levels != 0) {
    return InvalidArgument("affine levels=" + std::to_string(s.n_levels) + " needs entropy=rans (packed codes have 2^bits levels)");
  }
  if (s.codec == CodecId::kAffine && s.entropy == Entropy::kNone && s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8)
    return InvalidArgument("affine bits=" + std::to_string(s.bits) + ": expected 2, 3, 4 or 8");
  if (s.affine_rule == AffineRule::kQ4_0 && (s.bits != 4 || s.meta_bits != 16))
    return InvalidArgument("affine rule=q4_0 needs bits=4 and meta=16 (ggml's grid of 16 levels with an fp16 scale)");
  if (s.affine_rule == AffineRule::kQ8_0 && (s.bits != 8 || s.meta_bits != 16))
    return InvalidArgument("affine rule=q8_0 needs bits=8 and meta=16 (ggml's grid of 255 levels with an fp16 scale)");
  if (s.codec == CodecId::kCodebook && s.entropy == Entropy::kNone && (s.bits < 1 || s.bits > 4))
    return InvalidArgument("codebook bits=" + std::to_string(s.bits) + ": expected 1..4");
  if (s.meta_bits != 4 && s.meta_bits != 8 && s.meta_bits != 16)
    return InvalidArgument("meta=" + std::to_string(s.meta_bits) + ": expected 4, 8 or 16 (fp16)");
  if (s.codec == CodecId::kCodebook) {
    if (s.meta_bits != 16) return InvalidArgument("codebook scales are fp16; meta must be 16");
    if (s.entropy == Entropy::kNone && s.levels.size() != (1u << s.bits))
      return InvalidArgument("codebook bits=" + std::to_string(s.bits) + " needs " + std::to_string(1u << s.bits) + " levels, got " + std::to_string(s.levels.size()));
    for (size_t i = 1; i < s.levels.size(); ++i)
      if (!(s.levels[i - 1] < s.levels[i])) return InvalidArgument("codebook levels must be strictly ascending");
    if (!s.thresholds.empty()) {
      if (s.thresholds.size() != s.levels.size() - 1) return InvalidArgument("codebook needs one threshold fewer than levels");
      for (size_t i = 0; i < s.thresholds.size(); ++i)
        if (!(s.levels[i] <= s.thresholds[i] && s.thresholds[i] <= s.levels[i + 1]) || (i && !(s.thresholds[i - 1] < s.thresholds[i])))
          return InvalidArgument("codebook thresholds must ascend and lie between neighbouring levels");
    }
  }
  return Status::OK();
}

}  // namespace

std::vector<std::string> PresetNames() {
  std::vector<std::string> v;
  for (const Preset& p : kPresets) v.push_back(p.name);
  return v;
}

Result<CodecSpec> CodecSpec::Parse(std::string_view text) {
  for (const Preset& p : kPresets)
    if (text == p.name) return Parse(p.spec);
  CodecSpec s;
  const size_t colon = text.find(':');
  const std::string_view name = text.substr(0, colon);
  std::string_view opts = colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  if (name == "f32" || name == "f16" || name == "bf16") {
    if (colon != std::string_view::npos) return InvalidArgument("codec " + std::string(name) + " takes no options");
    s.codec = name == "f32" ? CodecId::kF32 : name == "f16" ? CodecId::kF16 : CodecId::kBF16;
    s.bits = name == "f32" ? 32 : 16;
    return s;
  }
  if (name == "fp8") {
    if (colon != std::string_view::npos) return InvalidArgument("codec fp8 takes no options");
    s.codec = CodecId::kFp8;
    s.bits = 8;
    return s;
  }
  if (name == "affine") {
    s.codec = CodecId::kAffine;
    s.bits = 4;
    s.meta_bits = 16;
  } else if (name == "codebook") {
    s.codec = CodecId::kCodebook;
    s.bits = 2;
    s.meta_bits = 16;
  } else {
    std::string known;
    for (const Preset& p : kPresets) known += std::string(", ") + p.name;
    return InvalidArgument("unknown codec \"" + std::string(name) + "\" (known: f32, f16, bf16, fp8, affine:..., codebook:..." + known + ")");
  }
  std::map<std::string, bool> seen;
  while (!opts.empty()) {
    size_t comma = opts.find(',');
    std::string_view kv = opts.substr(0, comma);
    opts = comma == std::string_view::npos ? std::string_view() : opts.substr(comma + 1);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) return InvalidArgument("codec option \"" + std::string(kv) + "\" is not key=value");
    std::string key(kv.substr(0, eq));
    std::string_view v = kv.substr(eq + 1);
    if (seen[key]) return InvalidArgument("codec option " + key + " given twice");
    seen[key] = true;
    MQKV_RETURN_IF_ERROR(ApplyOption(&s, name, key, v));
  }
  if (s.entropy == Entropy::kRans) {  // codes are bytes; an affine bits=B without levels means 2^B levels
    if (s.codec == CodecId::kAffine && s.n_levels == 0 && s.bits <= 8) s.n_levels = static_cast<uint16_t>(1u << s.bits);
    s.bits = 8;
  }
  if (seen["seed"] && s.rotation != Rotation::kHadamard)
    return InvalidArgument("codec option seed applies to rotate=hadamard only");
  if (s.fit_lloyd && !s.thresholds.empty())
    return InvalidArgument("codec option fit=lloyd sets the thresholds (the fitted levels' midpoints); drop thresholds");
  MQKV_RETURN_IF_ERROR(CheckRanges(s));
  return s;
}

std::string CodecSpec::ToString() const {
  switch (codec) {
    case CodecId::kF32: return "f32";
    case CodecId::kF16: return "f16";
    case CodecId::kBF16: return "bf16";
    case CodecId::kFp8: return "fp8";
    default: break;
  }
  std::string s = codec == CodecId::kAffine ? "affine:" : "codebook:";
  s += "bits=" + std::to_string(bits) + ",group=" + std::to_string(group);
  if (codec == CodecId::kAffine) s += ",meta=" + std::to_string(meta_bits);
  if (entropy == Entropy::kRans) s += codec == CodecId::kAffine ? ",levels=" + std::to_string(n_levels) + ",entropy=rans" : ",entropy=rans";
  if (codec == CodecId::kAffine && affine_rule != AffineRule::kMinMax)
    s += affine_rule == AffineRule::kQ4_0 ? ",rule=q4_0" : ",rule=q8_0";
  s += std::string(",axis=") + (axis == GroupAxis::kToken ? "token" : "channel");
  if (codec == CodecId::kCodebook) {
    s += ",levels=" + JoinFloats(levels);
    if (!thresholds.empty()) s += ",thresholds=" + JoinFloats(thresholds);
    s += std::string(",scale=") + (scale_rule == ScaleRule::kRobust ? "robust" : scale_rule == ScaleRule::kRms ? "rms" : "absmax");
    if (fit_lloyd) s += ",fit=lloyd";
  }
  if (rotation == Rotation::kHadamard) s += ",rotate=hadamard,seed=" + std::to_string(seed);
  if (sinks) s += ",sinks=" + std::to_string(sinks);
  if (residual) s += ",residual=" + std::to_string(residual);
  if (prerope) s += ",prerope=1";
  return s;
}

}  // namespace mqkv
