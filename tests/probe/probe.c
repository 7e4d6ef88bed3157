/* probe: a tiny static program the integration tests run inside containers to ask the
 * kernel directly what the container may do (syscalls busybox cannot make), and to
 * load it (memory, processes, CPU) for the limit tests. Prints one line. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

static const char *errno_name(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case ENOMEM: return "ENOMEM";
    case EROFS: return "EROFS";
    case ETXTBSY: return "ETXTBSY";
    case EBADF: return "EBADF";
    case ENXIO: return "ENXIO";
    case ESRCH: return "ESRCH";
    default: return "EOTHER";
    }
}

/* The answer is the output; the exit code says only that probe itself worked. */
static int report(long rc) {
    printf("%s\n", rc < 0 ? errno_name(errno) : "ok");
    return 0;
}

/* Logs a line once: the racer sees the same process many times. */
static unsigned long seen[16384];
static int nseen;
static void once(FILE *log, const char *fmt, ...) {
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    unsigned long h = 5381;
    for (const char *c = line; *c; c++) h = h * 33 + (unsigned char)*c;
    for (int i = 0; i < nseen; i++)
        if (seen[i] == h) return;
    if (nseen < 16384) seen[nseen++] = h;
    fputs(line, log);
}

/* Whether `target` (a /proc link's text) is a program of the container. */
static int ours(const char *target) {
    return !strcmp(target, "/bin/busybox") || !strcmp(target, "/bin/probe");
}

/* race HOSTPATH: until /race.stop exists, looks at every other process of the container
 * whose executable is not one of the container's (a process the runtime is starting):
 * its exe, root, cwd and descriptors, read and (host files) written. Logs to /race.log
 * what it got: "exe PID TARGET", "exe-open PID TARGET" (a handle kept), "root PID"
 * (HOSTPATH reached through /proc/PID/root), "cwd PID TARGET", "fd PID N TARGET",
 * "fd-write PID N TARGET"; and "denied N": how often such a process refused us.
 * When stopped, tries to open each kept exe handle for writing and writes through it:
 * "exe-write TARGET" (the attack worked) or "exe-write-refused TARGET ERRNO". */
static int race(const char *hostpath) {
    FILE *log = fopen("/race.log", "w");
    if (!log) { perror("probe: /race.log"); return 2; }
    setvbuf(log, NULL, _IOLBF, 0);
    int held[256], nheld = 0, last_held = 0;
    long denied = 0, rounds = 0;
    pid_t self = getpid();
    char path[4096 + 64], target[4096];
    while (access("/race.stop", F_OK) != 0) {
        rounds++;
        DIR *proc = opendir("/proc");
        if (!proc) { perror("probe: /proc"); return 2; }
        struct dirent *e;
        while ((e = readdir(proc))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == self) continue;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            ssize_t n = readlink(path, target, sizeof target - 1);
            if (n >= 0) {
                target[n] = 0;
                if (ours(target)) continue;
                once(log, "exe %d %s\n", pid, target);
            } else if (errno == EACCES || errno == EPERM) {
                denied++;
            } else {
                continue; /* gone, or a kernel thread */
            }
            int fd = pid == last_held ? -1 : open(path, O_PATH | O_CLOEXEC);
            if (fd >= 0) {
                snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
                n = readlink(path, target, sizeof target - 1);
                target[n < 0 ? 0 : n] = 0;
                if (!ours(target) && nheld < 256) {
                    fprintf(log, "exe-open %d %s\n", pid, target);
                    held[nheld++] = fd;
                    last_held = pid;
                } else {
                    close(fd);
                }
            }
            snprintf(path, sizeof path, "/proc/%d/root%s", pid, hostpath);
            if (access(path, F_OK) == 0) once(log, "root %d\n", pid);
            snprintf(path, sizeof path, "/proc/%d/cwd", pid);
            n = readlink(path, target, sizeof target - 1);
            if (n >= 0) { target[n] = 0; once(log, "cwd %d %s\n", pid, target); }
            for (int i = 0; i < 64; i++) {
                snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, i);
                n = readlink(path, target, sizeof target - 1);
                if (n < 0) continue;
                target[n] = 0;
                once(log, "fd %d %d %s\n", pid, i, target);
                if (target[0] != '/' || !strncmp(target, "/dev/", 5)) continue;
                int w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
                if (w >= 0) {
                    once(log, "fd-write %d %d %s\n", pid, i, target);
                    write(w, "raced\n", 6);
                    close(w);
                }
            }
        }
        closedir(proc);
    }
    for (int i = 0; i < nheld; i++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", held[i]);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        int w = open(path, O_WRONLY | O_CLOEXEC);
        if (w >= 0 && write(w, "raced", 5) == 5) {
            fprintf(log, "exe-write %s\n", target);
            close(w);
        } else {
            fprintf(log, "exe-write-refused %s %s\n", target, errno_name(errno));
        }
    }
    fprintf(log, "denied %ld\nrounds %ld\ndone\n", denied, rounds);
    fclose(log);
    return 0;
}

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs CMD with a seccomp filter under which the syscall NR answers ENOSYS (needs
 * CAP_SYS_ADMIN or no_new_privs: run it as root). Returns only on failure. */
static int exec_without(long nr, char **cmd) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
        perror("probe: seccomp");
        return 2;
    }
    execvp(cmd[0], cmd);
    perror("probe: exec");
    return 127;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe keyctl|unshare-user|mount|getpid|clone-newns|personality VALUE|syscall-ns getppid|personality N|io_uring|alloc MB|fork N|spin SECS|fds|burst MB MARKER|no-clone3 CMD...|no-open-tree CMD...|race HOSTPATH\n");
        return 2;
    }
    const char *what = argv[1];
    if (!strcmp(what, "udp-echo") && argc > 2) { /* answers each datagram with "echo:" + it */
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
        if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0)
            return report(-1);
        printf("listening\n");
        fflush(stdout);
        for (;;) {
            char buf[512], out[520];
            struct sockaddr_in peer;
            socklen_t len = sizeof peer;
            ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
            if (n < 0)
                return report(-1);
            int m = snprintf(out, sizeof out, "echo:%.*s", (int)n, buf);
            sendto(s, out, m, 0, (struct sockaddr *)&peer, len);
        }
    }
    if (!strcmp(what, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the session keyring */
        return report(syscall(SYS_keyctl, 0, -3, 0));
    if (!strcmp(what, "unshare-user"))
        return report(unshare(CLONE_NEWUSER));
    if (!strcmp(what, "mount"))
        return report(mount("none", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(what, "io_uring")) { /* a one-entry ring, closed again */
        struct io_uring_params params;
        memset(&params, 0, sizeof(params));
        long fd = syscall(SYS_io_uring_setup, 1, &params);
        if (fd >= 0) close(fd);
        return report(fd);
    }
    if (!strcmp(what, "getpid"))
        return report(syscall(SYS_getpid));
    if (!strcmp(what, "clone-newns")) { /* clone(2) asking for a new mount namespace */
        long pid = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
        return report(pid);
    }
    if (!strcmp(what, "personality") && argc > 2) /* personality(VALUE), e.g. 0xffffffff */
        return report(syscall(SYS_personality, strtoul(argv[2], NULL, 0)));
    if (!strcmp(what, "syscall-ns") && argc > 3) {
        /* nanoseconds per call of getppid or of personality(0xffffffff) (a rule with an
         * argument condition: the kernel cannot cache the filter's answer), N calls */
        long n = atol(argv[3]);
        int arg = !strcmp(argv[2], "personality");
        double t0 = now(CLOCK_MONOTONIC);
        for (long i = 0; i < n; i++)
            arg ? syscall(SYS_personality, 0xffffffffUL) : syscall(SYS_getppid);
        printf("%.1f\n", (now(CLOCK_MONOTONIC) - t0) * 1e9 / n);
        return 0;
    }
    if (!strcmp(what, "alloc") && argc > 2) {
        long mb = atol(argv[2]);
        for (long i = 0; i < mb; i++) {
            char *chunk = malloc(1 << 20);
            if (!chunk) return report(-1);
            memset(chunk, 1, 1 << 20);
        }
        printf("allocated %ld MiB\n", mb);
        return 0;
    }
    if (!strcmp(what, "fork") && argc > 2) {
        int wanted = atoi(argv[2]), made = 0, failed = 0, last = 0;
        pid_t pids[4096];
        for (int i = 0; i < wanted && i < 4096; i++) {
            pid_t pid = fork();
            if (pid == 0) { pause(); _exit(0); }
            if (pid < 0) { failed++; last = errno; continue; }
            pids[made++] = pid;
        }
        for (int i = 0; i < made; i++) { kill(pids[i], SIGKILL); waitpid(pids[i], NULL, 0); }
        printf("forked %d failed %d %s\n", made, failed, failed ? errno_name(last) : "-");
        return 0;
    }
    if (!strcmp(what, "spin") && argc > 2) {
        /* SECS of this process's own CPU time, however long the wall clock takes (a busy
         * machine may give it less than its share, never more); prints "CPU_MS WALL_MS". */
        double secs = atof(argv[2]);
        double wall0 = now(CLOCK_MONOTONIC), cpu0 = now(CLOCK_PROCESS_CPUTIME_ID);
        volatile unsigned long x = 0;
        while (now(CLOCK_PROCESS_CPUTIME_ID) - cpu0 < secs)
            for (int i = 0; i < 10000; i++) x++;
        printf("%d %d\n", (int)((now(CLOCK_PROCESS_CPUTIME_ID) - cpu0) * 1000),
               (int)((now(CLOCK_MONOTONIC) - wall0) * 1000));
        return 0;
    }
    if (!strcmp(what, "no-clone3") && argc > 2)
        /* CMD where clone3 answers ENOSYS, as on kernels before 5.3 or under Docker's
         * seccomp profile. */
        return exec_without(SYS_clone3, argv + 2);
    if (!strcmp(what, "race") && argc > 2)
        return race(argv[2]);
    if (!strcmp(what, "no-open-tree") && argc > 2)
        /* CMD where open_tree answers ENOSYS, as on kernels before 5.2. */
        return exec_without(SYS_open_tree, argv + 2);
    if (!strcmp(what, "burst") && argc > 3) {
        /* A final burst: grows stdout's pipe to 1 MiB (pipe-max-size), writes MB MiB of
         * numbered 16-byte lines, then "burst-end" to stderr, creates the file MARKER
         * and exits: the last MiB is still in the pipe when the process is gone, for
         * its reader to drain. */
        long mb = atol(argv[2]);
        if (fcntl(1, F_SETPIPE_SZ, 1 << 20) < 0) {
            fprintf(stderr, "probe: F_SETPIPE_SZ: %s\n", errno_name(errno));
            return 1;
        }
        static char chunk[(1 << 16) + 1]; /* + snprintf's last NUL */
        const size_t size = 1 << 16;
        long line = 0;
        for (long left = mb << 20; left > 0; left -= size) {
            for (size_t at = 0; at < size; at += 16)
                snprintf(chunk + at, 17, "%015ld\n", line++ % 1000000000000000L);
            for (size_t done = 0; done < size;) {
                ssize_t n = write(1, chunk + done, size - done);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) return 1;
                done += n;
            }
        }
        fprintf(stderr, "burst-end\n");
        int fd = open(argv[3], O_CREAT | O_WRONLY, 0644);
        return fd < 0 ? 1 : 0;
    }
    if (!strcmp(what, "fds")) {
        DIR *dir = opendir("/proc/self/fd");
        if (!dir) return report(-1);
        struct dirent *e;
        while ((e = readdir(dir))) {
            if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(dir)) continue;
            printf("%s ", e->d_name);
        }
        printf("\n");
        return 0;
    }
    fprintf(stderr, "probe: unknown command %s\n", what);
    return 2;
}
