#include "qbench/runner/child_process.hpp"

#include "qbench/common/errors.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace qbench {

namespace {
std::string signal_name(int sig) {
    const char* abbrev = sigabbrev_np(sig);
    const char* text = strsignal(sig);
    std::string s = abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
    if (text) s += std::string(" (") + text + ")";
    return s;
}

// Ends the child's whole process group: first politely, then for good after the grace period.
void stop_group(pid_t pid, std::chrono::milliseconds grace) {
    ::kill(-pid, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            ::kill(-pid, SIGKILL);  // stragglers in the group
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(-pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
}
}  // namespace

std::string child_exit::describe() const {
    switch (how) {
    case kind::exited: return "exit code " + std::to_string(exit_code);
    case kind::signaled: return "killed by " + signal_name(signal);
    case kind::timed_out: return "timed out after " + std::to_string(static_cast<long long>(wall_s)) + " s";
    case kind::interrupted: return "interrupted";
    }
    return "unknown";
}

std::filesystem::path self_executable() { return std::filesystem::read_symlink("/proc/self/exe"); }

child_exit run_child(const std::vector<std::string>& argv, const child_options& options) {
    if (argv.empty()) throw error("run_child: empty command");
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    int log_fd = -1;
    if (!options.log_file.empty()) {
        log_fd = ::open(options.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0) throw error("cannot open cell log " + options.log_file.string() + ": " + std::strerror(errno));
    }
    const auto start = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid < 0) {
        if (log_fd >= 0) ::close(log_fd);
        throw error(std::string("fork failed: ") + std::strerror(errno));
    }
    if (pid == 0) {
        // Child: own process group (so a timeout kills everything it started), output to the log, then exec.
        ::setpgid(0, 0);
        if (log_fd >= 0) {
            ::dup2(log_fd, STDOUT_FILENO);
            ::dup2(log_fd, STDERR_FILENO);
        }
        ::signal(SIGINT, SIG_DFL);
        ::signal(SIGTERM, SIG_DFL);
        ::execv(args[0], args.data());
        const char msg[] = "qbench: exec of cell child failed\n";
        [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
        ::_exit(127);
    }
    ::setpgid(pid, pid);  // also from the parent, to win the race with an early kill
    if (log_fd >= 0) ::close(log_fd);

    child_exit result;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (r == pid) {
            result.wall_s = elapsed;
            if (WIFEXITED(status)) {
                result.how = child_exit::kind::exited;
                result.exit_code = WEXITSTATUS(status);
            } else if (WIFSIGNALED(status)) {
                result.how = child_exit::kind::signaled;
                result.signal = WTERMSIG(status);
            }
            ::kill(-pid, SIGKILL);  // anything the child left behind in its group
            return result;
        }
        if (r < 0 && errno != EINTR) throw error(std::string("waitpid failed: ") + std::strerror(errno));
        if (options.timeout && elapsed > options.timeout->count()) {
            stop_group(pid, options.kill_grace);
            result.how = child_exit::kind::timed_out;
            result.wall_s = elapsed;
            return result;
        }
        if (options.should_stop && options.should_stop()) {
            stop_group(pid, options.kill_grace);
            result.how = child_exit::kind::interrupted;
            result.wall_s = elapsed;
            return result;
        }
        if (options.on_tick) options.on_tick(elapsed);
        std::this_thread::sleep_for(options.poll_interval);
    }
}

}  // namespace qbench
