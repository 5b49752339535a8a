// Reading and writing safetensors files without LibTorch.
//
// Layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian
// unsigned header length N, N bytes of UTF-8 JSON
//   {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<string>"}}
// then the raw little-endian tensor bytes; data_offsets are relative to the end of the header.
// Files are validated strictly on open: every problem is an adfw::Error naming the file and the
// byte offset or tensor name, never a crash or a half-loaded file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace adfw::safetensors {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

/// Bytes per element.
std::size_t dtype_size(DType d);
/// The header spelling: "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL".
const char* dtype_name(DType d);
/// Parses a header spelling; throws adfw::Error for anything else.
DType dtype_from_name(const std::string& name);

/// One tensor inside an open File. `data` points into the File's buffer (valid while the File
/// lives) and is not necessarily aligned: read it with memcpy or the File's converters.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const unsigned char* data = nullptr;
  std::size_t nbytes = 0;
  int64_t numel() const;
};

class File {
 public:
  /// Reads and validates the whole file. Throws adfw::Error on any malformation.
  static File open(const std::filesystem::path& path);
  /// Validates an in-memory image of a file; `label` names it in error messages.
  static File from_bytes(std::vector<unsigned char> bytes, const std::string& label);

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Tensor names in the order of their data offsets.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  /// Throws adfw::Error listing the known names (with a did-you-mean) for an unknown name.
  const TensorView& at(const std::string& name) const;
  /// Every element converted to float (F16, BF16, F32, F64, integers, BOOL as 0/1).
  std::vector<float> to_float(const std::string& name) const;
  /// Every element as int64 (integer and BOOL tensors only; floats are an error).
  std::vector<int64_t> to_int64(const std::string& name) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  File() = default;
  std::filesystem::path path_;
  std::shared_ptr<std::vector<unsigned char>> buffer_;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorView> tensors_;  ///< sorted by data offset
  std::map<std::string, std::size_t> index_;
};

/// A tensor to write: raw little-endian bytes of numel * dtype_size elements.
struct TensorData {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
};

/// Builds a TensorData from typed values (float -> F32, double -> F64, int64_t -> I64, ...).
template <class T>
TensorData make_tensor(const std::string& name, const std::vector<int64_t>& shape, const T* values,
                       std::size_t count);

/// Writes tensors in the given order (header padded with spaces to a multiple of 8 bytes) to a
/// temporary file next to `path`, then renames it into place. Throws adfw::Error for duplicate
/// or reserved names and byte counts that do not match the shape.
void write(const std::filesystem::path& path, const std::vector<TensorData>& tensors,
           const std::map<std::string, std::string>& metadata = {});

/// The same from bytes the caller keeps (e.g. tensors' own storage): nothing is copied, so saving
/// a multi-gigabyte state does not hold it twice in memory.
void write(const std::filesystem::path& path, const std::vector<TensorView>& tensors,
           const std::map<std::string, std::string>& metadata = {});

}  // namespace adfw::safetensors
