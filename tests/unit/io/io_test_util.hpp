#pragma once
// Helpers shared by the checkpoint I/O tests: a scratch directory, deterministic tensors, raw file builders.
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/tensor.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace qbench::test {

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class scratch_dir {
public:
    scratch_dir() {
        static std::atomic<int> counter{0};
        m_path = std::filesystem::temp_directory_path() /
                 ("qbench-io-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        std::filesystem::remove_all(m_path);
        std::filesystem::create_directories(m_path);
    }
    ~scratch_dir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    scratch_dir(const scratch_dir&) = delete;
    scratch_dir& operator=(const scratch_dir&) = delete;
    const std::filesystem::path& path() const { return m_path; }
    std::filesystem::path operator/(const std::string& name) const { return m_path / name; }

private:
    std::filesystem::path m_path;
};

/// A tensor of random bytes (any dtype), deterministic in `seed`.
inline host_tensor random_tensor(dtype type, std::vector<std::int64_t> shape, std::uint64_t seed) {
    host_tensor t = host_tensor::zeros(type, std::move(shape));
    for (std::size_t i = 0; i < t.data.size(); ++i)
        t.data[i] = static_cast<std::byte>(random_bits(seed, i) & 0xffu);
    return t;
}

inline void write_bytes(const std::filesystem::path& p, const std::vector<std::byte>& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + p.string());
}

inline std::vector<std::byte> read_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> b(c.size());
    for (std::size_t i = 0; i < c.size(); ++i) b[i] = static_cast<std::byte>(c[i]);
    return b;
}

inline std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// A raw safetensors image: 8-byte size, the header text (space-padded to 8 unless told not to), `data_bytes`
/// bytes of pattern. data_start is where the data buffer begins.
struct raw_file {
    std::vector<std::byte> bytes;
    std::uint64_t data_start = 0;
};
inline raw_file make_raw(std::string header, std::size_t data_bytes, bool pad = true) {
    if (pad)
        while ((8 + header.size()) % 8 != 0) header += ' ';
    raw_file f;
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) f.bytes.push_back(static_cast<std::byte>((n >> (8 * i)) & 0xffu));
    for (char c : header) f.bytes.push_back(static_cast<std::byte>(c));
    f.data_start = f.bytes.size();
    for (std::size_t i = 0; i < data_bytes; ++i) f.bytes.push_back(static_cast<std::byte>(i & 0xffu));
    return f;
}

/// Runs f and returns the input_error it throws; anything else (or nothing) fails the test.
template <class F> input_error expect_input_error(F&& f) {
    try {
        f();
    } catch (const input_error& e) {
        return e;
    }
    throw std::logic_error("expected an input_error, none was thrown");
}

/// Checks that an input_error names `file` and that its place and message contain the given parts.
inline void check_error(const input_error& e, const std::string& file, const std::string& place_part,
                        const std::string& message_part) {
    INFO("what(): " << e.what());
    CHECK(e.file() == file);
    CHECK(std::string(e.what()).rfind(file, 0) == 0);
    CHECK_THAT(e.place(), Catch::Contains(place_part));
    CHECK_THAT(e.message(), Catch::Contains(message_part));
}

}  // namespace qbench::test
