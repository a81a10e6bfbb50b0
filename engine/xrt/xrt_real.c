/*
 * xrt_real.c — struct xrt_dev_ops over Xilinx XRT's C API (libxrt_coreutil),
 * built only with -Dxrt (DETD_HAVE_XRT).
 *
 * XRT 2.13 may end the process instead of returning an error: without
 * XILINX_XRT in the environment, or when $XILINX_XRT/lib/libxrt_core.so.2
 * (the device shim it loads at run time) is missing, its C functions throw
 * a C++ exception nothing catches and the process aborts.  A daemon must not
 * die because a card is missing, so dev_open first checks that environment
 * and then asks a child process to open the device (and load the xclbin):
 * only when the child comes back clean does the daemon itself call XRT.  A
 * child that aborts or hangs costs a log line and a /status reason.
 *
 * The child is this same executable started afresh (/proc/self/exe), not a
 * bare fork: the daemon probes again while its streams and workers run, and
 * a forked copy of a threaded process inherits every lock some other thread
 * held at that instant (the allocator's, the dynamic loader's, libstdc++'s)
 * with nobody left to release it — XRT's first malloc or dlopen in such a
 * child can wait forever.  A constructor below recognises the child by its
 * argv[0] and runs the probe before main().
 *
 * Threads: as xrt_dev.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xrt/xrt_bo.h>
#include <xrt/xrt_device.h>
#include <xrt/xrt_kernel.h>

#include "xrt_dev.h"

#define PROBE_TIMEOUT_MS 20000
/* How the probe child is told apart from a normal start (argv[0]) and what
 * it is asked (environment: the device index, the xclbin if any). */
#define PROBE_ARGV0 "detd-xrt-probe"
#define PROBE_ENV_INDEX "DETD_XRT_PROBE_INDEX"
#define PROBE_ENV_XCLBIN "DETD_XRT_PROBE_XCLBIN"

extern char **environ;

/* Exit codes of the probe child. */
enum { PROBE_OK = 0, PROBE_NO_DEVICE = 10, PROBE_XCLBIN = 11 };

/* The last non-empty line of what the child wrote (XRT's own reason). */
static void last_line(char *text, char *out, size_t len)
{
	char *best = NULL;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		while (*l == ' ' || *l == '\t')
			l++;
		if (*l)
			best = l;
	}
	snprintf(out, len, "%s", best ? best : "");
}

static int check_env(char *err, size_t errlen)
{
	const char *root = getenv("XILINX_XRT");
	if (!root || !*root) {
		snprintf(err, errlen,
			 "XILINX_XRT is not set (XRT needs it to find its device library; "
			 "see README, FPGA)");
		return -ENODEV;
	}
	char lib[PATH_MAX];
	snprintf(lib, sizeof(lib), "%s/lib/libxrt_core.so.2", root);
	if (access(lib, R_OK) != 0) {
		snprintf(err, errlen, "no XRT device library %s (XILINX_XRT=%s)", lib, root);
		return -ENODEV;
	}
	return 0;
}

/*
 * The probe child's whole life, before main(): glibc passes an ELF
 * constructor the program's argc/argv, so nothing of the program proper
 * (its own main, GStreamer, threads) runs in it.  XRT's chatter goes to the
 * pipe the parent reads; an abort inside XRT ends only the child.
 */
__attribute__((constructor)) static void probe_child(int argc, char **argv, char **envp)
{
	(void)envp;
	if (argc < 1 || !argv || !argv[0] || strcmp(argv[0], PROBE_ARGV0) != 0)
		return;
	const char *idx = getenv(PROBE_ENV_INDEX);
	const char *xclbin = getenv(PROBE_ENV_XCLBIN);
	char *end = NULL;
	long index = idx ? strtol(idx, &end, 10) : -1;
	if (!idx || end == idx || *end || index < 0 || index > INT_MAX)
		_exit(2);
	xrtDeviceHandle d = xrtDeviceOpen((unsigned)index);
	if (!d)
		_exit(PROBE_NO_DEVICE);
	if (xclbin && *xclbin && xrtDeviceLoadXclbinFile(d, xclbin) != 0)
		_exit(PROBE_XCLBIN);
	_exit(PROBE_OK);
}

/* A probe variable, whatever its value. */
static bool is_probe_var(const char *e)
{
	return strncmp(e, PROBE_ENV_INDEX "=", sizeof(PROBE_ENV_INDEX)) == 0 ||
	       strncmp(e, PROBE_ENV_XCLBIN "=", sizeof(PROBE_ENV_XCLBIN)) == 0;
}

/* The environment of the child: ours (XRT reads XILINX_XRT and its own
 * settings from it) without any stale probe variables, plus the request
 * (req: up to two "NAME=value" strings the caller owns, NULL for none).
 * Only the array is allocated. */
static char **probe_env(char *req0, char *req1)
{
	size_t n = 0;
	while (environ && environ[n])
		n++;
	char **env = calloc(n + 3, sizeof(*env));
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!is_probe_var(environ[i]))
			env[k++] = environ[i];
	if (req0)
		env[k++] = req0;
	if (req1)
		env[k++] = req1;
	return env;
}

/* Start the probe child: this executable again, stdout/stderr on the pipe,
 * default signal handling and no blocked signals whatever ours are. */
static int probe_spawn(int index, const char *xclbin, int out_fd, pid_t *pid, char *err,
		       size_t errlen)
{
	char ivar[sizeof(PROBE_ENV_INDEX) + 16], *xvar = NULL;
	snprintf(ivar, sizeof(ivar), PROBE_ENV_INDEX "=%d", index);
	if (xclbin && asprintf(&xvar, PROBE_ENV_XCLBIN "=%s", xclbin) < 0)
		xvar = NULL; /* undefined after a failed asprintf */
	char **env = !xclbin || xvar ? probe_env(ivar, xvar) : NULL;
	if (!env) {
		free(xvar);
		snprintf(err, errlen, "probe: out of memory");
		return -ENOMEM;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	int r = posix_spawn_file_actions_init(&fa);
	if (!r && !(r = posix_spawnattr_init(&at))) {
		if (!(r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) &&
		    !(r = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO)) &&
		    !(r = posix_spawn_file_actions_adddup2(&fa, out_fd, STDERR_FILENO)) &&
		    !(r = posix_spawnattr_setsigmask(&at, &none)) &&
		    !(r = posix_spawnattr_setsigdefault(&at, &all)) &&
		    !(r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))) {
			char *argv[] = {PROBE_ARGV0, NULL};
			r = posix_spawn(pid, "/proc/self/exe", &fa, &at, argv, env);
		}
		posix_spawnattr_destroy(&at);
	}
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	free(xvar);
	if (r)
		snprintf(err, errlen, "probe: cannot start /proc/self/exe: %s", strerror(r));
	return -r;
}

/* Start the child, let it try what we are about to do, report how it went. */
static int probe(int index, const char *xclbin, char *err, size_t errlen)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		int e = errno;
		snprintf(err, errlen, "probe: pipe: %s", strerror(e));
		return -e;
	}
	pid_t pid;
	int r = probe_spawn(index, xclbin, fds[1], &pid, err, errlen);
	if (r) {
		close(fds[0]);
		close(fds[1]);
		return r;
	}
	close(fds[1]);
	char buf[4096];
	size_t n = 0;
	int status = 0;
	bool done = false, eof = false;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + PROBE_TIMEOUT_MS;
	while (!done) {
		/* after EOF only the exit is awaited: poll() on no fds sleeps */
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		int pr = poll(&p, eof ? 0 : 1, 50);
		if (pr > 0) {
			ssize_t got = read(fds[0], buf + n, sizeof(buf) - 1 - n);
			if (got > 0) {
				n += (size_t)got;
				if (n == sizeof(buf) - 1)
					n = 0; /* keep the tail: the reason comes last */
				continue;
			}
			if (got == 0 || (errno != EINTR && errno != EAGAIN))
				eof = true;
		}
		pid_t w = waitpid(pid, &status, WNOHANG);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (w == pid)
			done = true;
		else if ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			close(fds[0]);
			snprintf(err, errlen, "probe: XRT did not open device %d within %d s", index,
				 PROBE_TIMEOUT_MS / 1000);
			return -ETIMEDOUT;
		}
	}
	close(fds[0]);
	buf[n] = '\0';
	char why[200];
	last_line(buf, why, sizeof(why));
	if (WIFSIGNALED(status)) {
		snprintf(err, errlen, "XRT aborted (signal %d) opening device %d: %s",
			 WTERMSIG(status), index, why[0] ? why : "no message");
		return -ENODEV;
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	if (code == PROBE_OK)
		return 0;
	if (code == PROBE_NO_DEVICE) {
		snprintf(err, errlen, "no XRT device %d (xrtDeviceOpen failed)", index);
		return -ENODEV;
	}
	if (code == PROBE_XCLBIN) {
		snprintf(err, errlen, "device %d cannot load %s%s%s", index, xclbin,
			 why[0] ? ": " : "", why);
		return -EINVAL;
	}
	snprintf(err, errlen, "probe of device %d exited %d: %s", index, code, why);
	return -EIO;
}

struct real_dev {
	xrtDeviceHandle h;
	int index;
};

static int real_dev_open(void *user, int index, void **dev, char *err, size_t errlen)
{
	(void)user;
	int r = check_env(err, errlen);
	if (r)
		return r;
	/* the xclbin is probed in load_xclbin: here only the device */
	if ((r = probe(index, NULL, err, errlen)))
		return r;
	struct real_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->index = index;
	d->h = xrtDeviceOpen((unsigned)index);
	if (!d->h) {
		free(d);
		snprintf(err, errlen, "no XRT device %d (xrtDeviceOpen failed)", index);
		return -ENODEV;
	}
	*dev = d;
	return 0;
}

static void real_dev_close(void *user, void *dev)
{
	(void)user;
	struct real_dev *d = dev;
	if (!d)
		return;
	xrtDeviceClose(d->h);
	free(d);
}

/* XRT 2.13's C API has no device-name query: the index names it. */
static void real_dev_name(void *user, void *dev, char *buf, size_t len)
{
	(void)user;
	const struct real_dev *d = dev;
	snprintf(buf, len, "xrt:%d", d->index);
}

static int real_load_xclbin(void *user, void *dev, const char *path, uint8_t uuid[16], char *err,
			    size_t errlen)
{
	(void)user;
	struct real_dev *d = dev;
	if (!path) {
		snprintf(err, errlen, "engine.xrt.xclbin is not set");
		return -EINVAL;
	}
	if (access(path, R_OK) != 0) {
		int e = errno;
		snprintf(err, errlen, "xclbin %s: %s", path, strerror(e));
		return -e;
	}
	int r = probe(d->index, path, err, errlen);
	if (r)
		return r;
	if (xrtDeviceLoadXclbinFile(d->h, path) != 0) {
		snprintf(err, errlen, "device %d cannot load %s", d->index, path);
		return -EINVAL;
	}
	xuid_t u;
	if (xrtDeviceGetXclbinUUID(d->h, u) != 0) {
		snprintf(err, errlen, "no UUID for the loaded xclbin %s", path);
		return -EINVAL;
	}
	memcpy(uuid, u, 16);
	return 0;
}

static int real_kernel_open(void *user, void *dev, const uint8_t uuid[16], const char *name,
			    void **kernel, char *err, size_t errlen)
{
	(void)user;
	struct real_dev *d = dev;
	xuid_t u;
	memcpy(u, uuid, 16);
	xrtKernelHandle k = xrtPLKernelOpen(d->h, u, name);
	if (!k) {
		snprintf(err, errlen, "xclbin has no kernel '%s'", name);
		return -ENOENT;
	}
	*kernel = k;
	return 0;
}

static void real_kernel_close(void *user, void *kernel)
{
	(void)user;
	if (kernel)
		xrtKernelClose(kernel);
}

static int real_arg_group(void *user, void *kernel, int argno)
{
	(void)user;
	int g = xrtKernelArgGroupId(kernel, argno);
	return g < 0 ? -EINVAL : g;
}

static int real_bo_alloc(void *user, void *dev, size_t bytes, int group, void **bo)
{
	(void)user;
	struct real_dev *d = dev;
	/* XRT backs a BO with aligned_alloc(4096, size): C11 (and ASan) want
	 * the size a multiple of the alignment, so ask for whole pages. */
	bytes = (bytes + 4095) & ~(size_t)4095;
	xrtBufferHandle b = xrtBOAlloc(d->h, bytes, 0, (xrtMemoryGroup)group);
	if (!b)
		return -ENOMEM;
	*bo = b;
	return 0;
}

static void real_bo_free(void *user, void *bo)
{
	(void)user;
	if (bo)
		xrtBOFree(bo);
}

static int real_bo_write(void *user, void *bo, const void *src, size_t bytes, size_t off)
{
	(void)user;
	return xrtBOWrite(bo, src, bytes, off) ? -EIO : 0;
}

static int real_bo_read(void *user, void *bo, void *dst, size_t bytes, size_t off)
{
	(void)user;
	return xrtBORead(bo, dst, bytes, off) ? -EIO : 0;
}

static int real_bo_sync(void *user, void *bo, enum xrt_sync_dir dir, size_t bytes, size_t off)
{
	(void)user;
	enum xclBOSyncDirection d =
		dir == XRT_SYNC_TO_DEVICE ? XCL_BO_SYNC_BO_TO_DEVICE : XCL_BO_SYNC_BO_FROM_DEVICE;
	return xrtBOSync(bo, d, bytes, off) ? -EIO : 0;
}

static int real_run_open(void *user, void *kernel, void **run)
{
	(void)user;
	xrtRunHandle r = xrtRunOpen(kernel);
	if (!r)
		return -EIO;
	*run = r;
	return 0;
}

static int real_run_set_bo(void *user, void *run, int argno, void *bo)
{
	(void)user;
	return xrtRunSetArg(run, argno, (xrtBufferHandle)bo) ? -EINVAL : 0;
}

static int real_run_set_u32(void *user, void *run, int argno, uint32_t v)
{
	(void)user;
	return xrtRunSetArg(run, argno, (unsigned int)v) ? -EINVAL : 0;
}

static int real_run_start(void *user, void *run)
{
	(void)user;
	return xrtRunStart(run) ? -EIO : 0;
}

static enum xrt_run_state real_run_wait(void *user, void *run, unsigned timeout_ms,
					uint32_t *status)
{
	(void)user;
	/* The kernel's return value is not readable through XRT 2.13's C API;
	 * a refused descriptor shows as an error state or wrong outputs. */
	*status = 0;
	enum ert_cmd_state s = xrtRunWaitFor(run, timeout_ms);
	switch (s) {
	case ERT_CMD_STATE_COMPLETED:
		return XRT_RUN_COMPLETED;
	case ERT_CMD_STATE_NEW:
	case ERT_CMD_STATE_QUEUED:
	case ERT_CMD_STATE_RUNNING:
	case ERT_CMD_STATE_SUBMITTED:
	case ERT_CMD_STATE_TIMEOUT:
		return XRT_RUN_TIMEOUT;
	default:
		return XRT_RUN_ERROR;
	}
}

static void real_run_close(void *user, void *run)
{
	(void)user;
	if (run)
		xrtRunClose(run);
}

const struct xrt_dev_ops xrt_dev_real = {
	.name = "xrt",
	.dev_open = real_dev_open,
	.dev_close = real_dev_close,
	.dev_name = real_dev_name,
	.load_xclbin = real_load_xclbin,
	.kernel_open = real_kernel_open,
	.kernel_close = real_kernel_close,
	.arg_group = real_arg_group,
	.bo_alloc = real_bo_alloc,
	.bo_free = real_bo_free,
	.bo_write = real_bo_write,
	.bo_read = real_bo_read,
	.bo_sync = real_bo_sync,
	.run_open = real_run_open,
	.run_set_bo = real_run_set_bo,
	.run_set_u32 = real_run_set_u32,
	.run_start = real_run_start,
	.run_wait = real_run_wait,
	.run_close = real_run_close,
};
