// Umbrella header of libmqkv.
#pragma once
#include "mqkv/block.h"
#include "mqkv/codec.h"
#include "mqkv/kvset.h"
#include "mqkv/measure.h"
#include "mqkv/numeric.h"
#include "mqkv/simd.h"
#include "mqkv/snapshot.h"
#include "mqkv/status.h"
#include "mqkv/version.h"
