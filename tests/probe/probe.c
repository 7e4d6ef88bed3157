/* probe: a tiny static program the integration tests run inside containers to ask the
 * kernel directly what the container may do (syscalls busybox cannot make), and to
 * load it (memory, processes, CPU) for the limit tests. Prints one line. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
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

static const char *errno_name(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case ENOMEM: return "ENOMEM";
    default: return "EOTHER";
    }
}

/* The answer is the output; the exit code says only that probe itself worked. */
static int report(long rc) {
    printf("%s\n", rc < 0 ? errno_name(errno) : "ok");
    return 0;
}

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe keyctl|unshare-user|mount|getpid|io_uring|alloc MB|fork N|spin SECS|fds|no-clone3 CMD...\n");
        return 2;
    }
    const char *what = argv[1];
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
        double secs = atof(argv[2]);
        double wall0 = now(CLOCK_MONOTONIC), cpu0 = now(CLOCK_PROCESS_CPUTIME_ID);
        volatile unsigned long x = 0;
        while (now(CLOCK_MONOTONIC) - wall0 < secs) x++;
        double share = (now(CLOCK_PROCESS_CPUTIME_ID) - cpu0) / (now(CLOCK_MONOTONIC) - wall0);
        printf("%d\n", (int)(share * 1000)); /* per mille of one core */
        return 0;
    }
    if (!strcmp(what, "no-clone3") && argc > 2) {
        /* Runs CMD where clone3 answers ENOSYS, as on kernels before 5.3 or under
         * Docker's seccomp profile (needs CAP_SYS_ADMIN: run it as root). */
        struct sock_filter code[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
            perror("probe: seccomp");
            return 2;
        }
        execvp(argv[2], argv + 2);
        perror("probe: exec");
        return 127;
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
