// Quantize (mqkv/measure.h): what a tensor really costs in a file and what comes back from it,
// through the real writer and reader (a snapshot built in memory), not a simulation.
#include "mqkv/measure.h"

namespace mqkv {

Result<TensorAccounting> Quantize(const TensorDesc& desc, const float* rows, const CodecSpec& spec, DType out, void* dst,
                                  const WriterOptions& opts, const ModelInfo* model) {
  std::vector<uint8_t> bytes;
  {
    MQKV_ASSIGN_OR_RETURN(std::unique_ptr<Writer> w, Writer::CreateInMemory(&bytes, "<quantize>", opts));
    if (model) w->SetModel(*model);
    MQKV_RETURN_IF_ERROR(w->AddTensor(desc, rows, spec));
    MQKV_RETURN_IF_ERROR(w->Finish());
  }
  MQKV_ASSIGN_OR_RETURN(std::unique_ptr<Snapshot> s, Snapshot::OpenBytes(bytes.data(), bytes.size(), "<quantize>"));
  if (desc.n_tokens) MQKV_RETURN_IF_ERROR(s->Decode(0, 0, desc.n_tokens, out, dst));
  MQKV_ASSIGN_OR_RETURN(SnapshotAccounting a, AccountSnapshot(*s));
  if (a.tensors.size() != 1) return Internal("Quantize: the snapshot holds " + std::to_string(a.tensors.size()) + " tensors");
  return a.tensors[0];
}

}  // namespace mqkv
