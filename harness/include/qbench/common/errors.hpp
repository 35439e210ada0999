#pragma once
/// Typed errors thrown by qbench library code. Library code never exits; the CLI and the runner catch these at
/// their boundaries (a command, a matrix cell) and turn them into messages, exit codes and cell outcomes.
#include <cstdint>
#include <stdexcept>
#include <string>

namespace qbench {

/// Base of every qbench error.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Malformed user input: a YAML matrix, a catalog, a checkpoint, a results file, a CLI flag.
/// what() reads "FILE:PLACE: MESSAGE", where PLACE is e.g. "12:5 (key 'bits')" or "tensor 'x' at byte 4096".
class input_error : public error {
public:
    input_error(std::string file, std::string place, std::string message)
        : error(compose(file, place, message)), m_file(std::move(file)), m_place(std::move(place)),
          m_message(std::move(message)) {}
    const std::string& file() const noexcept { return m_file; }
    const std::string& place() const noexcept { return m_place; }
    const std::string& message() const noexcept { return m_message; }

private:
    static std::string compose(const std::string& file, const std::string& place, const std::string& message) {
        std::string s = file;
        if (!place.empty()) s += ":" + place;
        return s + ": " + message;
    }
    std::string m_file, m_place, m_message;
};

/// A backend cannot run this cell (e.g. bnb at 3 bits). Recorded as outcome `unsupported`, never as an error.
class unsupported_error : public error {
public:
    using error::error;
};

/// Which budget an allocation exceeded.
enum class memory_kind : std::uint8_t { vram, host };

/// An allocation did not fit: either the real device/host ran out, or the emulated instance's budget did.
/// Recorded as outcome `oom_vram` / `oom_host` with the requested and available bytes.
class out_of_memory : public error {
public:
    out_of_memory(memory_kind kind, std::uint64_t requested_bytes, std::uint64_t available_bytes, std::string what)
        : error(std::move(what)), m_kind(kind), m_requested(requested_bytes), m_available(available_bytes) {}
    memory_kind kind() const noexcept { return m_kind; }
    std::uint64_t requested_bytes() const noexcept { return m_requested; }
    std::uint64_t available_bytes() const noexcept { return m_available; }

private:
    memory_kind m_kind;
    std::uint64_t m_requested, m_available;
};

/// A CUDA, cuBLAS or cuSOLVER call failed (other than out of memory).
class cuda_error : public error {
public:
    using error::error;
};

}  // namespace qbench
