/*
 * reconciler-shim: the only process reconciler keeps per task.
 *
 *   reconciler-shim run CONFIG     isolate and start a task, then stay as its parent:
 *                                   copy its output into rotating log files, and write its
 *                                   exit status to a file when it ends, so an exit is never
 *                                   lost while the service is down.
 *   reconciler-shim enter CONFIG   run a command inside a running task (namespaces, root,
 *                                   cgroup, user, capabilities) and pass its exit code through.
 *   reconciler-shim warm CONFIG    a shim made ahead of its task, with namespaces and root
 *                                   ready; the service claims it for a task (see cmd_warm).
 *   reconciler-shim park           do nothing until stdin (a pipe from the service) closes:
 *                                   the process primer.py moves to prime cgroup migrations.
 *
 * CONFIG is a file of NUL-terminated strings: key, value, key, value, ... written by
 * reconciler/executor/linux/launch.py. Everything here is single-threaded by design: namespace
 * and credential changes are per-thread in Linux.
 *
 * On "run", stdin is a pipe from the service (one byte: the task's cgroups are ready) and
 * stdout a pipe to it: it gets "started <pid>\n" once the task has exec'd, or
 * "error <message>\n" if it could not start, and at the task's exit "exit CODE SIGNAL AT
 * DROPPED\n" (written to the exit-status file first).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* capset(2)'s structures, declared here so the shim builds against musl too, whose headers
   carry no kernel uapi. */
#define CAP_VERSION_3 0x20080522
struct cap_header {
    unsigned int version;
    int pid;
};
struct cap_data {
    unsigned int effective, permitted, inheritable;
};

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define MAXV 512

/* The config lives in its own anonymous mapping, unmapped once the task runs: the waiting
   parent keeps no heap, only the few strings it still needs (see keep_for_waiting). */
struct config {
    int n;
    char *buf; /* one anonymous mapping: the items, then the file's text */
    size_t mapped;
    struct {
        char *key, *val;
    } *item;
};

static struct config cfg;
static int err_fd = -1; /* child -> parent: why the task did not start */
static int die_to_stdout; /* a warm shim's parent at a claim: the service reads stdout */

static void die(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0) len = 0;
    if (len > (int)sizeof buf - 1) len = sizeof buf - 1;
    if (err_fd >= 0) {
        ssize_t w = write(err_fd, buf, len);
        (void)w;
    } else if (die_to_stdout) {
        printf("error %.*s\n", len, buf);
        fflush(stdout);
    } else {
        fprintf(stderr, "reconciler-shim: %s\n", buf);
    }
    _exit(127);
}

static const char *get(const char *key) {
    for (int i = 0; i < cfg.n; i++)
        if (strcmp(cfg.item[i].key, key) == 0) return cfg.item[i].val;
    return NULL;
}

static long getnum(const char *key, long dflt) {
    const char *v = get(key);
    return v ? strtol(v, NULL, 0) : dflt;
}

static void load_config_fd(int fd, const char *path) {
    struct stat st;
    if (fstat(fd, &st) < 0) die("stat %s: %s", path, strerror(errno));
    size_t items = MAXV * 2 * sizeof *cfg.item;
    size_t mapped = items + (size_t)st.st_size + 1;
    char *map = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) die("out of memory");
    cfg.buf = map;
    cfg.mapped = mapped;
    cfg.item = (void *)map;
    char *buf = map + items;
    ssize_t got = 0;
    while (got < st.st_size) {
        /* pread: the warm shim's parent and child read one memfd through shared offsets */
        ssize_t r = pread(fd, buf + got, st.st_size - got, got);
        if (r <= 0) die("read %s: %s", path, strerror(errno));
        got += r;
    }
    buf[got] = 0;
    close(fd);
    char *p = buf, *end = buf + got;
    while (p < end && cfg.n < MAXV * 2) {
        char *k = p;
        p += strlen(p) + 1;
        if (p >= end) break;
        char *v = p;
        p += strlen(p) + 1;
        cfg.item[cfg.n].key = k;
        cfg.item[cfg.n].val = v;
        cfg.n++;
    }
}

static void load_config(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    load_config_fd(fd, path);
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    if (write(fd, text, strlen(text)) < 0) die("write %s: %s", path, strerror(errno));
    close(fd);
}

static void join_cgroups(void) {
    for (int i = 0; i < cfg.n; i++)
        if (strcmp(cfg.item[i].key, "cgroup") == 0) write_file(cfg.item[i].val, "0");
}

/* ---------- filesystem ---------- */

static void xmount(const char *src, const char *dst, const char *fs, unsigned long flags,
                   const char *data) {
    if (mount(src, dst, fs, flags, data) < 0)
        die("mount %s on %s: %s", src ? src : "-", dst, strerror(errno));
}

/* Every bind is nosuid and nodev: with Nomad's default mknod capability a task could
   otherwise make a node for a host disk in a directory it writes, and open it. */
static void bind_mount(const char *src, const char *dst, int ro, int rec) {
    xmount(src, dst, NULL, MS_BIND | (rec ? MS_REC : 0), NULL);
    xmount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | (ro ? MS_RDONLY : 0) | MS_NOSUID | MS_NODEV,
           NULL);
}

/* mkdir -p */
static void mkdirs(const char *path) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    if (mkdir(p, 0755) < 0 && errno != EEXIST) die("mkdir %s: %s", p, strerror(errno));
}

/* A bind mount's target: a directory for a directory, an empty file for anything else.
   Targets that already exist (a file inside an earlier bind, such as /etc/shadow) are kept. */
static void make_target(const char *src, const char *dst) {
    struct stat st, have;
    if (lstat(dst, &have) == 0) return;
    if (stat(src, &st) < 0) die("bind source %s: %s", src, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        mkdirs(dst);
        return;
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dst);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        mkdirs(parent);
    }
    int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) die("create %s: %s", dst, strerror(errno));
    close(fd);
}

/* Copy of the staged secrets (regular files and the directories that hold them) from an open
   directory into a directory of the task's fresh tmpfs, owned by the task user. The staged
   tree is root's only, on the host; a name the service is still writing (".reconciler-*")
   is skipped. Takes over `dir`. */
static void copy_files(int dir, const char *to) {
    DIR *d = fdopendir(dir);
    if (!d) die("staged secrets: %s", strerror(errno));
    struct dirent *e;
    char b[4096], buf[8192];
    uid_t uid = (uid_t)getnum("uid", 65534);
    gid_t gid = (gid_t)getnum("gid", 65534);
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            !strncmp(e->d_name, ".reconciler-", 12))
            continue;
        if ((size_t)snprintf(b, sizeof b, "%s/%s", to, e->d_name) >= sizeof b)
            die("staged secret %s: name too long", e->d_name);
        struct stat st;
        if (fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dir, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 || (mkdir(b, st.st_mode & 0777) < 0 && errno != EEXIST) ||
                chown(b, uid, gid) < 0)
                die("copy %s: %s", e->d_name, strerror(errno));
            copy_files(sub, b);
            continue;
        }
        if (!S_ISREG(st.st_mode)) continue;
        int in = openat(dir, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        int out = open(b, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 07777);
        if (in < 0 || out < 0) die("copy %s: %s", e->d_name, strerror(errno));
        ssize_t n;
        while ((n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, n) != n) die("copy %s: %s", e->d_name, strerror(errno));
        if (fchown(out, uid, gid) < 0) die("chown %s: %s", b, strerror(errno));
        close(in);
        close(out);
    }
    closedir(d);
}

/* The one reading of a "SRC\tDST" copy_into item, for a cold start and a warm shim's claim:
   SRC (the host's staged secrets) opened as a directory, or -1 when there is none (no
   template staged any: the task gets an empty /secrets, as under Nomad). Any other failure
   (a link, not a directory, no fds left) refuses the start: a task is never run without the
   secrets it was given. `*dst` is set to DST. */
static const char *staged_dst(const char *v) {
    const char *tab = strchr(v, '\t');
    if (!tab) die("bad copy_into %s", v);
    return tab + 1;
}

static int open_staged(const char *v, const char **dst) {
    char src[4096];
    *dst = staged_dst(v);
    snprintf(src, sizeof src, "%.*s", (int)(*dst - 1 - v), v);
    int dir = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0 && errno != ENOENT) die("staged secrets %s: %s", src, strerror(errno));
    return dir;
}

/* Copy what open_staged found into `to`; anything but a directory (-1, or the placeholder a
   warm shim's parent hands over for "none staged") copies nothing. Takes over `dir`. */
static void copy_staged(int dir, const char *to) {
    struct stat st;
    if (dir < 0) return;
    if (fstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        close(dir);
        return;
    }
    copy_files(dir, to);
}

static void setup_dev(const char *root) {
    char p[4096];
    snprintf(p, sizeof p, "%s/dev", root);
    xmount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k");
    /* Device nodes made in place, as runc does outside a user namespace: a mknod each instead
       of a bind mount each, so a start (and the exit) handles six fewer mounts. */
    static const struct {
        const char *name;
        unsigned major, minor;
    } nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
                 {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    mode_t old_mask = umask(0);
    for (unsigned i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        snprintf(p, sizeof p, "%s/dev/%s", root, nodes[i].name);
        if (mknod(p, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0)
            die("mknod %s: %s", p, strerror(errno));
    }
    umask(old_mask);
    snprintf(p, sizeof p, "%s/dev/pts", root);
    mkdir(p, 0755);
    xmount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    snprintf(p, sizeof p, "%s/dev/ptmx", root);
    if (symlink("pts/ptmx", p) < 0) die("symlink %s: %s", p, strerror(errno));
    snprintf(p, sizeof p, "%s/dev/shm", root);
    mkdir(p, 01777);
    xmount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k");
    static const char *links[][2] = {{"/proc/self/fd", "fd"},
                                     {"/proc/self/fd/0", "stdin"},
                                     {"/proc/self/fd/1", "stdout"},
                                     {"/proc/self/fd/2", "stderr"}};
    for (unsigned i = 0; i < sizeof links / sizeof *links; i++) {
        snprintf(p, sizeof p, "%s/dev/%s", root, links[i][1]);
        if (symlink(links[i][0], p) < 0) die("symlink %s: %s", p, strerror(errno));
    }
    /* No new nodes in /dev (dac_override would allow them): pts and shm stay writable. */
    snprintf(p, sizeof p, "%s/dev", root);
    xmount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL);
}

static void setup_proc(const char *root) {
    char p[4096];
    snprintf(p, sizeof p, "%s/proc", root);
    xmount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    /* Nomad's (runc's) read-only and masked paths. */
    static const char *ro[] = {"sys", "sysrq-trigger", "irq", "bus"};
    for (unsigned i = 0; i < sizeof ro / sizeof *ro; i++) {
        snprintf(p, sizeof p, "%s/proc/%s", root, ro[i]);
        if (access(p, F_OK) == 0) bind_mount(p, p, 1, 1);
    }
    snprintf(p, sizeof p, "%s/proc/kcore", root);
    if (access(p, F_OK) == 0) bind_mount("/dev/null", p, 0, 0);
}

/* Mounts made inside the new root, after pivot_root, from sources opened before it: host
   volumes and the task's resolv.conf. Opening with openat2(RESOLVE_NO_SYMLINKS) pins the exact
   source (no link anywhere in its path), and resolving the target in the new root keeps links
   there (merged /usr, an absolute /etc/resolv.conf link) inside the task's root. */
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
struct mount_attr_compat {
    unsigned long long attr_set, attr_clr, propagation, userns_fd;
};
struct open_how_compat {
    unsigned long long flags, mode, resolve;
};
#define MAX_LATE 64
static struct late_mount {
    int fd, ro, dir;
    const char *dst;
} late[MAX_LATE];
static int nlate;

/* A detached, nosuid+nodev (and read-only where asked) copy of the mount at SRC of a
   "SRC\tDST\tro|rw" spec, so it can be attached after the host's tree is gone. */
static int open_tree_of(const char *spec) {
    const char *t1 = strchr(spec, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (!t2) die("bad late mount %s", spec);
    char src[4096];
    snprintf(src, sizeof src, "%.*s", (int)(t1 - spec), spec);
    struct open_how_compat how = {O_PATH | O_CLOEXEC, 0, 0x04 /* RESOLVE_NO_SYMLINKS */};
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, src, &how, sizeof how);
    if (fd < 0) die("volume source %s: %s", src, errno == ELOOP ? "a symbolic link in its path"
                                                                 : strerror(errno));
    int tree = (int)syscall(SYS_open_tree, fd, "", 1 /* CLONE */ | O_CLOEXEC | 0x1000 /* EMPTY_PATH */
                                                      | 0x8000 /* AT_RECURSIVE */);
    if (tree < 0) die("volume source %s: open_tree: %s", src, strerror(errno));
    close(fd);
    int ro = strcmp(t2 + 1, "ro") == 0;
    struct mount_attr_compat attr = {0x2 | 0x4 | (ro ? 0x1 : 0) /* NOSUID NODEV RDONLY */, 0, 0, 0};
    if (syscall(SYS_mount_setattr, tree, "", 0x1000 | 0x8000, &attr, sizeof attr) < 0)
        die("volume source %s: mount_setattr: %s", src, strerror(errno));
    return tree;
}

/* Remember a detached tree (opened here, or by the warm shim's parent) for mount_late. */
static void add_late(const char *spec, int tree) {
    const char *t1 = strchr(spec, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (!t2 || nlate >= MAX_LATE) die("bad late mount %s", spec);
    struct stat st;
    if (fstat(tree, &st) < 0) die("late mount %s: %s", spec, strerror(errno));
    late[nlate].fd = tree;
    late[nlate].ro = strcmp(t2 + 1, "ro") == 0;
    late[nlate].dir = S_ISDIR(st.st_mode);
    late[nlate].dst = strndup(t1 + 1, t2 - t1 - 1);
    nlate++;
}

static void open_late(const char *spec) { add_late(spec, open_tree_of(spec)); }

static void mount_late(void) {
    for (int i = 0; i < nlate; i++) {
        struct late_mount *m = &late[i];
        if (m->dir) {
            mkdirs(m->dst);
        } else if (access(m->dst, F_OK) < 0) {
            int fd = open(m->dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0) die("mount point %s: %s", m->dst, strerror(errno));
            close(fd);
        }
        /* The target is resolved in the new root, links included (they stay inside it). */
        if (syscall(SYS_move_mount, m->fd, "", AT_FDCWD, m->dst, 0x04 /* F_EMPTY_PATH */ | 0x10
                    /* T_SYMLINKS */) < 0)
            die("mount %s: %s", m->dst, strerror(errno));
        close(m->fd);
    }
}

static void mount_tmpfs(const char *root, const char *v) {
    /* value: "DST\tOPTIONS"; the task user owns it */
    char p[4096], opts[512];
    const char *tab = strchr(v, '\t');
    if (!tab) die("bad tmpfs %s", v);
    snprintf(opts, sizeof opts, "%s,uid=%ld,gid=%ld", tab + 1, getnum("uid", 65534),
             getnum("gid", 65534));
    snprintf(p, sizeof p, "%s%.*s", root, (int)(tab - v), v);
    mkdirs(p);
    xmount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts);
}

/* The task's tree under `root` (a fresh tmpfs): binds and links of the config, /dev, /proc,
   /sys. A warm shim builds it from the node's part only, before any task is known. */
static void build_root(const char *root) {
    char p[4096];
    /* First: stop every mount below from propagating back to the host. */
    xmount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    /* The root is a small tmpfs (a mount point, as pivot_root needs): its skeleton of mount
       points costs no disk I/O and vanishes with the task. */
    xmount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m");
    static const char *skeleton[] = {"dev", "proc", "sys"};
    for (unsigned i = 0; i < sizeof skeleton / sizeof *skeleton; i++) {
        snprintf(p, sizeof p, "%s/%s", root, skeleton[i]);
        mkdir(p, 0755);
    }
    for (int i = 0; i < cfg.n; i++) {
        const char *k = cfg.item[i].key, *v = cfg.item[i].val;
        if (strcmp(k, "symlink") == 0) {
            /* value: "TARGET\tPATH-INSIDE-ROOT" (Debian's merged /usr: /bin -> usr/bin) */
            const char *tab = strchr(v, '\t');
            if (!tab) die("bad symlink %s", v);
            char target[4096];
            snprintf(target, sizeof target, "%.*s", (int)(tab - v), v);
            snprintf(p, sizeof p, "%s%s", root, tab + 1);
            if (symlink(target, p) < 0) die("symlink %s: %s", p, strerror(errno));
        } else if (strcmp(k, "bind_ro") == 0 || strcmp(k, "bind_rw") == 0) {
            /* value: "SRC\tDST" with DST inside the root */
            char src[4096];
            const char *tab = strchr(v, '\t');
            if (!tab) die("bad bind %s", v);
            snprintf(src, sizeof src, "%.*s", (int)(tab - v), v);
            snprintf(p, sizeof p, "%s%s", root, tab + 1);
            make_target(src, p);
            bind_mount(src, p, k[5] == 'r' && k[6] == 'o', 1);
        } else if (strcmp(k, "mount_point") == 0) {
            /* value: a directory inside the root that a claim mounts over */
            snprintf(p, sizeof p, "%s%s", root, v);
            mkdirs(p);
        } else if (strcmp(k, "tmpfs") == 0) {
            mount_tmpfs(root, v);
        } else if (strcmp(k, "copy_into") == 0) {
            const char *to;
            int dir = open_staged(v, &to);
            snprintf(p, sizeof p, "%s%s", root, to);
            copy_staged(dir, p);
        }
    }
    setup_dev(root);
    setup_proc(root);
    snprintf(p, sizeof p, "%s/sys", root);
    xmount("sysfs", p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

static void enter_root(const char *root) {
    if (chdir(root) < 0) die("chdir %s: %s", root, strerror(errno));
    if (getnum("no_pivot_root", 0)) {
        xmount(root, "/", NULL, MS_MOVE, NULL);
        if (chroot(".") < 0) die("chroot: %s", strerror(errno));
    } else {
        /* pivot_root(".", ".") stacks the old root on top of the new one; detach it. */
        if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root: %s", strerror(errno));
        if (umount2(".", MNT_DETACH) < 0) die("umount old root: %s", strerror(errno));
    }
    if (chdir("/") < 0) die("chdir /: %s", strerror(errno));
}

static void setup_root(void) {
    const char *root = get("root");
    if (!root) return;
    for (int i = 0; i < cfg.n; i++)
        if (strcmp(cfg.item[i].key, "bind_late") == 0) open_late(cfg.item[i].val);
    build_root(root);
    enter_root(root);
    mount_late();
    /* The task root itself is read-only: only its mounted dirs are writable. */
    xmount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);
}

/* ---------- credentials and capabilities ---------- */

static int last_cap(void) {
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    char buf[16] = {0};
    if (fd >= 0) {
        ssize_t r = read(fd, buf, sizeof buf - 1);
        (void)r;
        close(fd);
    }
    int n = atoi(buf);
    return n > 0 ? n : 40;
}

static void drop_privileges(void) {
    unsigned long long caps = strtoull(get("caps") ? get("caps") : "0", NULL, 0);
    uid_t uid = (uid_t)getnum("uid", 65534);
    gid_t gid = (gid_t)getnum("gid", 65534);
    int top = last_cap();
    for (int c = 0; c <= top; c++)
        if (!(caps & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
            die("drop capability %d from the bounding set: %s", c, strerror(errno));
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) die("keepcaps: %s", strerror(errno));
    if (setgroups(0, NULL) < 0) die("setgroups: %s", strerror(errno));
    if (setresgid(gid, gid, gid) < 0) die("setgid %d: %s", gid, strerror(errno));
    if (setresuid(uid, uid, uid) < 0) die("setuid %d: %s", uid, strerror(errno));
    struct cap_header hdr = {CAP_VERSION_3, 0};
    struct cap_data data[2];
    memset(data, 0, sizeof data);
    for (int i = 0; i < 2; i++) {
        unsigned int word = (unsigned int)(caps >> (32 * i));
        data[i].effective = word;
        data[i].permitted = word;
        data[i].inheritable = word;
    }
    if (syscall(SYS_capset, &hdr, data) < 0) die("capset: %s", strerror(errno));
    if (uid != 0)
        for (int c = 0; c <= top; c++)
            if ((caps & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
                die("raise ambient capability %d: %s", c, strerror(errno));
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs: %s", strerror(errno));
}

/* ---------- Landlock ---------- */

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_restrict_self 446
#endif

struct landlock_attr {
    unsigned long long handled_access_fs, handled_access_net, scoped;
};

/* Each task gets a Landlock domain of its own. Landlock lets a process read or trace only
   processes of its own domain or below, so in host pid mode one task cannot read another's
   /proc/PID/environ or root, and (ABI 6) cannot signal processes outside its domain, such as
   the service, despite Nomad's default kill capability. The domain also refuses making
   device nodes, a second wall behind nodev. Files are not restricted otherwise. */
static void landlock_domain(void) {
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, 1 /* VERSION */);
    if (abi < 1) return; /* no Landlock: `reconciler audit` names what that leaves open */
    struct landlock_attr attr = {(1ULL << 6) | (1ULL << 11) /* MAKE_CHAR, MAKE_BLOCK */, 0,
                                 abi >= 6 ? 2 /* SCOPE_SIGNAL */ : 0};
    size_t size = abi >= 6 ? sizeof attr : sizeof attr.handled_access_fs;
    int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (fd < 0) die("landlock ruleset: %s", strerror(errno));
    if (syscall(SYS_landlock_restrict_self, fd, 0) < 0) die("landlock: %s", strerror(errno));
    close(fd);
}

/* ---------- exec ---------- */

static char **collect(const char *key) {
    static char *lists[2][MAXV + 1];
    static int which = 0;
    char **out = lists[which++ & 1];
    int n = 0;
    for (int i = 0; i < cfg.n && n < MAXV; i++)
        if (strcmp(cfg.item[i].key, key) == 0) out[n++] = cfg.item[i].val;
    out[n] = NULL;
    return out;
}

static void exec_task(void) {
    char **argv = collect("arg");
    char **envp = collect("env");
    if (!argv[0]) die("no command");
    const char *cwd = get("cwd");
    if (cwd && *cwd && chdir(cwd) < 0) die("work_dir %s: %s", cwd, strerror(errno));
    const char *cmd = argv[0];
    /* Binaries are looked up inside the task root only, as Nomad does. */
    static const char *dirs[] = {"/local/", "/", "/usr/local/bin/", "/usr/bin/", "/bin/"};
    char path[4096];
    int saved = ENOENT;
    if (strchr(cmd, '/')) {
        execve(cmd, argv, envp);
        saved = errno;
    } else {
        for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++) {
            snprintf(path, sizeof path, "%s%s", dirs[i], cmd);
            execve(path, argv, envp);
            if (errno != ENOENT) {
                saved = errno;
                cmd = path;
                break;
            }
        }
    }
    if (saved == ENOENT) die("file %s not found under the task root", cmd);
    if (saved == EPERM)
        die("exec %s: permission denied (a file-capability binary needs a capability the task "
            "lacks?)", cmd);
    die("exec %s: %s", cmd, strerror(saved));
}

/* network mode "none": a fresh network namespace with only lo, and lo up. */
static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("lo: %s", strerror(errno));
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("lo up: %s", strerror(errno));
    close(s);
}

/* The parent moves the task into its cgroups while the task builds its root: on cgroup v1
   each side waits for an RCU grace period, so overlapping them halves a lone start. */
__attribute__((noinline)) static void child_setup(int newns_flags, int go_fd) {
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    const char *netns = get("netns");
    if (netns) {
        int fd = open(netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) die("join network namespace %s: %s", netns,
                                                        strerror(errno));
        close(fd);
    }
    if (unshare(newns_flags) < 0) die("unshare: %s", strerror(errno));
    if (getnum("net_none", 0)) loopback_up();
    const char *host = get("hostname");
    if (host && (newns_flags & CLONE_NEWUTS) && sethostname(host, strlen(host)) < 0)
        die("sethostname: %s", strerror(errno));
    write_file("/proc/self/oom_score_adj", "0");
    setup_root();
    drop_privileges();
    if (get("root")) landlock_domain(); /* isolated tasks only: raw_exec is the host's */
    /* pdeathsig is reset by a credential change, so set it after. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("pdeathsig: %s", strerror(errno));
    char go;
    if (read(go_fd, &go, 1) != 1) die("the shim could not place the task in its cgroup");
    close(go_fd);
    exec_task();
}

/* Write `pid` into every task cgroup. */
static int place_in_cgroups(pid_t pid, char *why, size_t len) {
    char text[32];
    snprintf(text, sizeof text, "%d", pid);
    for (int i = 0; i < cfg.n; i++) {
        if (strcmp(cfg.item[i].key, "cgroup") != 0) continue;
        int fd = open(cfg.item[i].val, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, text, strlen(text)) < 0) {
            snprintf(why, len, "join cgroup %s: %s", cfg.item[i].val, strerror(errno));
            if (fd >= 0) close(fd);
            return -1;
        }
        close(fd);
    }
    return 0;
}

/* ---------- logs ---------- */

struct log {
    int in;            /* pipe from the task */
    int out;           /* current file */
    const char *base;  /* <dir>/<task>.stdout, in kept[] */
    long index;        /* current file index */
    long long size;    /* bytes in the current file */
    long long max_size;
    long max_files;
    long long dropped; /* lines lost to a write error (disk full): reported at exit */
};

/* What the waiting parent still needs once its config is unmapped (log bases, the exit-status
   path), packed together, and one scratch buffer for the paths it makes: a few pages. */
#define SCRATCH (4096 + 64)
static size_t kept_used;
static char kept[3 * 4096 + SCRATCH] __attribute__((aligned(4096)));
static char pump[4096] __attribute__((aligned(4096))); /* a read of output; getdents64 */
#define scratch (kept + kept_used) /* after the kept strings: usually the same page */

static const char *keep(const char *s, size_t n) {
    if (n >= 4096) n = 4095; /* longer paths fail to open anyway */
    char *out = kept + kept_used;
    memcpy(out, s, n);
    out[n] = 0;
    kept_used += n + 1;
    return out;
}

static void log_open(struct log *l) {
    snprintf(scratch, SCRATCH, "%s.%ld", l->base, l->index);
    l->out = open(scratch, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                  0640);
    struct stat st;
    l->size = (l->out >= 0 && fstat(l->out, &st) == 0) ? st.st_size : 0;
    if (l->index >= l->max_files) {
        snprintf(scratch, SCRATCH, "%s.%ld", l->base, l->index - l->max_files);
        unlink(scratch);
    }
}

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static void log_init(struct log *l, const char *spec) {
    /* spec: "BASE\tMAX_FILES\tMAX_BYTES"; resume at the highest existing index (Nomad). */
    const char *tab1 = strchr(spec, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
    if (!tab2) die("bad log spec");
    l->base = keep(spec, tab1 - spec);
    l->max_files = strtol(tab1 + 1, NULL, 10);
    l->dropped = 0;
    l->max_size = strtoll(tab2 + 1, NULL, 10);
    l->index = 0;
    /* The directory is listed with getdents64 into a static buffer: opendir would malloc. */
    snprintf(scratch, SCRATCH, "%s", l->base);
    char *slash = strrchr(scratch, '/');
    const char *name = slash ? l->base + (slash - scratch) + 1 : l->base;
    if (slash) *slash = 0;
    size_t nlen = strlen(name);
    int d = open(slash ? scratch : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
        long got;
        while ((got = syscall(SYS_getdents64, d, pump, sizeof pump)) > 0)
            for (long off = 0; off < got;) {
                struct linux_dirent64 *e = (struct linux_dirent64 *)(pump + off);
                if (strncmp(e->d_name, name, nlen) == 0 && e->d_name[nlen] == '.') {
                    long i = strtol(e->d_name + nlen + 1, NULL, 10);
                    if (i > l->index) l->index = i;
                }
                off += e->d_reclen;
            }
        close(d);
    }
    log_open(l);
}

static void log_write(struct log *l, const char *buf, ssize_t n) {
    if (l->out < 0)
        for (ssize_t i = 0; i < n; i++) l->dropped += buf[i] == '\n';
    while (n > 0 && l->out >= 0) {
        long long room = l->max_size - l->size;
        if (room <= 0) {
            close(l->out);
            l->index++;
            log_open(l);
            continue;
        }
        ssize_t chunk = n < room ? n : (ssize_t)room;
        ssize_t w = write(l->out, buf, chunk);
        if (w <= 0) { /* disk full: drop output, never block the task, but count it */
            for (ssize_t i = 0; i < n; i++) l->dropped += buf[i] == '\n';
            return;
        }
        l->size += w;
        buf += w;
        n -= w;
    }
}

/* Returns 0 at EOF. */
static int log_pump(struct log *l) {
    ssize_t n = read(l->in, pump, sizeof pump);
    if (n > 0) {
        log_write(l, pump, n);
        return 1;
    }
    return n < 0 && (errno == EAGAIN || errno == EINTR);
}

/* ---------- run ---------- */

/* The task's namespaces, held open by the waiting parent from the task's start until its exit
   is reported: the last reference to a mount namespace tears its mounts down, and when that is
   the dying task's it does so before its parent hears of the exit (~1-3 ms for a task's ~25
   mounts here, tens of ms under load). Held here, the teardown waits until after the report.
   A namespace the task shares with the host is held too, which costs nothing. */
static int held_ns[3] = {-1, -1, -1};

static void hold_namespaces(pid_t pid) {
    static const char *kinds[] = {"mnt", "ipc", "uts"};
    char p[64];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "/proc/%d/ns/%s", pid, kinds[i]);
        held_ns[i] = open(p, O_RDONLY | O_CLOEXEC); /* -1 if the task is gone already */
    }
}

static void release_namespaces(void) {
    for (int i = 0; i < 3; i++)
        if (held_ns[i] >= 0) close(held_ns[i]);
}

/* The exit-status file, then the same line on `report` (the service's pipe): the service
   records the exit from the line, and a service that crashed before it did finds the file. No
   fsync: the file is for a crash of the service, which leaves the page cache in place; a crash
   of the machine ends the task too (a new boot id, and the service records it lost). When the
   file cannot be written (disk full) the shim exits with the task's status (128 + signal for a
   signal) for a service that was not there to read the line. */
static int write_status(const char *path, int status, long long dropped, int report) {
    char *tmp = scratch, text[128];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int len = snprintf(text, sizeof text, "exit %d %d %lld.%03ld %lld\n", code, sig,
                       (long long)ts.tv_sec, ts.tv_nsec / 1000000, dropped);
    const char *line = text + 5; /* the file holds the line without its "exit " */
    int ok = 1;
    if (path) {
        snprintf(tmp, SCRATCH, "%s.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                      0644);
        ok = fd >= 0 && write(fd, line, len - 5) == len - 5 && rename(tmp, path) == 0;
        if (fd >= 0) close(fd);
        if (!ok) unlink(tmp);
    }
    if (report >= 0) {
        ssize_t w = write(report, text, len); /* one write under PIPE_BUF: never torn */
        (void)w;
        close(report);
    }
    release_namespaces();
    if (ok) return 0;
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : (code & 0xff);
}

/* The rest of a shim's life once its task runs: copy the task's output into rotating files,
   then write its exit status. Its own frame: the set-up's deep stack stays out of the pages the
   waiting parent keeps. */
__attribute__((noinline)) static int supervise(pid_t child, int out_r, int err_r) {
    const char *so = get("stdout"), *se = get("stderr"), *exit_path = get("exit_file");
    int report = fcntl(1, F_DUPFD_CLOEXEC, 3); /* the service's pipe: the exit goes there */
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 1);
    dup2(devnull, 0);
    if (devnull > 2) close(devnull);
    struct log logs[2];
    int nlogs = 0;
    if (so) {
        logs[nlogs].in = out_r;
        log_init(&logs[nlogs++], so);
    }
    if (se) {
        logs[nlogs].in = err_r;
        log_init(&logs[nlogs++], se);
    }
    if (exit_path) exit_path = keep(exit_path, strlen(exit_path));
    munmap(cfg.buf, cfg.mapped); /* nothing below reads the config */
    cfg.n = 0;
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    int status = 0, exited = 0;
    long drain_ms = -1;
    long long dropped = 0;
    while (!exited || nlogs > 0) {
        struct pollfd fds[3];
        int k = 0;
        for (int i = 0; i < nlogs; i++) fds[k++] = (struct pollfd){logs[i].in, POLLIN, 0};
        int pidx = -1;
        if (!exited) {
            pidx = k;
            fds[k++] = (struct pollfd){pidfd, POLLIN, 0};
        }
        int r = poll(fds, k, exited ? (int)drain_ms : -1);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) break; /* a detached grandchild holds the pipe: stop waiting for it */
        if (pidx >= 0 && fds[pidx].revents) {
            if (waitpid(child, &status, 0) == child) {
                exited = 1;
                drain_ms = 2000; /* Nomad's logmon waits up to 2 s for writers to close */
            }
        }
        for (int i = nlogs - 1; i >= 0; i--) {
            if (!fds[i].revents) continue;
            if (!log_pump(&logs[i])) {
                close(logs[i].in);
                if (logs[i].out >= 0) close(logs[i].out);
                dropped += logs[i].dropped;
                logs[i] = logs[--nlogs];
            }
        }
    }
    for (int i = 0; i < nlogs; i++) dropped += logs[i].dropped;
    return write_status(exit_path, status, dropped, report);
}


static int cmd_run(void) {
    int flags = CLONE_NEWNS;
    if (getnum("new_pid", 1)) flags |= CLONE_NEWPID;
    if (getnum("new_ipc", 1)) flags |= CLONE_NEWIPC;
    if (getnum("new_uts", 1)) flags |= CLONE_NEWUTS;
    if (getnum("net_none", 0)) flags |= CLONE_NEWNET;
    /* A new pid namespace applies to children: the shim itself stays on the host. */
    if ((flags & CLONE_NEWPID) && unshare(CLONE_NEWPID) < 0) {
        printf("error unshare pid namespace: %s\n", strerror(errno));
        return 127;
    }
    int errp[2], gop[2], outp[2] = {-1, -1}, errlogp[2] = {-1, -1};
    if (pipe2(errp, O_CLOEXEC) < 0 || pipe2(gop, O_CLOEXEC) < 0) return 127;
    const char *so = get("stdout"), *se = get("stderr");
    if (so && pipe2(outp, O_CLOEXEC) < 0) return 127;
    if (se && pipe2(errlogp, O_CLOEXEC) < 0) return 127;
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        printf("error fork: %s\n", strerror(errno));
        return 127;
    }
    if (child == 0) {
        close(errp[0]);
        close(gop[1]);
        err_fd = errp[1];
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(so ? outp[1] : devnull, 1);
        dup2(se ? errlogp[1] : devnull, 2);
        child_setup(flags & ~CLONE_NEWPID, gop[0]);
    }
    close(errp[1]);
    close(gop[0]);
    if (so) close(outp[1]);
    if (se) close(errlogp[1]);
    char why[1024], ready;
    ssize_t n;
    /* The service makes the task's cgroups while the task builds its root, then sends one
       byte on stdin; EOF means it could not. */
    if (read(0, &ready, 1) != 1)
        snprintf(why, sizeof why, "the service could not set up the task's cgroups");
    else if (place_in_cgroups(child, why, sizeof why) == 0)
        why[0] = 0;
    if (why[0]) {
        /* The child may have failed first (then the cgroup write found no process): its own
           reason is the one to report. */
        kill(child, SIGKILL);
        close(gop[1]);
        int status;
        waitpid(child, &status, 0);
        char own[1024];
        ssize_t m = read(errp[0], own, sizeof own - 1);
        if (m > 0) {
            own[m] = 0;
            printf("error %s\n", own);
        } else {
            printf("error %s\n", why);
        }
        return 127;
    }
    if (write(gop[1], "g", 1) != 1) {
        /* the child is gone already: its reason is on errp */
    }
    close(gop[1]);
    n = read(errp[0], why, sizeof why - 1);
    close(errp[0]);
    if (n > 0) {
        why[n] = 0;
        int status;
        waitpid(child, &status, 0);
        printf("error %s\n", why);
        return 127;
    }
    hold_namespaces(child);
    printf("started %d\n", child);
    fflush(stdout);
    return supervise(child, so ? outp[0] : -1, se ? errlogp[0] : -1);
}

/* ---------- warm ---------- */

/* "warm CONFIG": a shim made before its task is known. Its child unshares the mount, ipc and
   uts namespaces in a new pid namespace and builds the node's part of a task root (chroot_env
   binds, /dev, /proc, /sys), pivots into it, and the parent places it into the pool cgroups the
   service made; then the parent prints "ready <pid>" and waits. The service claims it by
   renaming those cgroups to the task's and writing "claim SIZE\n" and the task's config on
   stdin (a memfd holds it from there): the parent
   opens the task's own directories as detached mount trees (open_tree: it is still in the
   host's mount namespace) and hands them with the config to the child over a socket; the
   child attaches them (move_mount), drops privileges and execs; from then on the parent is
   an ordinary shim. EOF on stdin before a claim (the service stopped or crashed) kills the
   child: a prepared shim never outlives the service that made it. */

#define MAX_FDS (MAX_LATE + 2)

static int send_fds(int sock, const int *fds, int n) {
    char byte = 'c';
    struct iovec iov = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* The number of descriptors received, or -1 at EOF (the parent is gone). */
static int recv_fds(int sock, int *fds) {
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    ssize_t r;
    while ((r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    if (r <= 0) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) return 0;
    int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    memcpy(fds, CMSG_DATA(c), sizeof(int) * n);
    return n;
}

__attribute__((noinline)) static void warm_child(int sock) {
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("pdeathsig: %s", strerror(errno));
    if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) < 0) die("unshare: %s", strerror(errno));
    write_file("/proc/self/oom_score_adj", "0");
    const char *root = get("root");
    if (!root) die("no root");
    build_root(root);
    enter_root(root);
    if (write(sock, "p", 1) != 1) _exit(0);
    int fds[MAX_FDS];
    int n = recv_fds(sock, fds);
    if (n < 1) _exit(0); /* the service let the shim go */
    close(sock);
    munmap(cfg.buf, cfg.mapped);
    cfg.n = 0;
    load_config_fd(fds[0], "the task's config");
    const char *host = get("hostname");
    if (host && sethostname(host, strlen(host)) < 0) die("sethostname: %s", strerror(errno));
    int next = 1;
    for (int i = 0; i < cfg.n; i++) {
        const char *k = cfg.item[i].key, *v = cfg.item[i].val;
        if (strcmp(k, "tmpfs") == 0) {
            mount_tmpfs("", v);
        } else if (strcmp(k, "copy_into") == 0 || strcmp(k, "bind_late") == 0) {
            if (next >= n) die("the shim got too few mounts for its task");
            if (k[0] == 'b') {
                add_late(v, fds[next++]);
            } else {
                copy_staged(fds[next++], staged_dst(v));
            }
        }
    }
    mount_late();
    xmount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) die("/dev/null: %s", strerror(errno));
    if (!get("stdout")) dup2(devnull, 1);
    if (!get("stderr")) dup2(devnull, 2);
    drop_privileges();
    landlock_domain();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("pdeathsig: %s", strerror(errno));
    exec_task();
}

static int cmd_warm(void) {
    if (unshare(CLONE_NEWPID) < 0) {
        printf("error unshare pid namespace: %s\n", strerror(errno));
        return 127;
    }
    int sv[2], errp[2], outp[2], errlogp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
        pipe2(errp, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0 ||
        pipe2(errlogp, O_CLOEXEC) < 0) {
        printf("error %s\n", strerror(errno));
        return 127;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        printf("error fork: %s\n", strerror(errno));
        return 127;
    }
    if (child == 0) {
        close(sv[0]);
        close(errp[0]);
        close(outp[0]);
        close(errlogp[0]);
        err_fd = errp[1];
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(outp[1], 1);
        dup2(errlogp[1], 2);
        warm_child(sv[1]);
    }
    close(sv[1]);
    close(errp[1]);
    close(outp[1]);
    close(errlogp[1]);
    char why[1024] = "", c;
    ssize_t n;
    if (place_in_cgroups(child, why, sizeof why) < 0 || read(sv[0], &c, 1) != 1) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        n = read(errp[0], why, sizeof why - 1);
        if (n > 0) why[n] = 0;
        printf("error %s\n", why[0] ? why : "the warm shim's child ended");
        return 127;
    }
    hold_namespaces(child); /* made before any claim: off the start's path */
    printf("ready %d\n", child);
    fflush(stdout);
    /* Wait for a claim, the service's end (EOF) or the child's (the socket closes). */
    char *line = scratch, *nl = NULL;
    size_t got = 0;
    for (;;) {
        struct pollfd fds[2] = {{0, POLLIN, 0}, {sv[0], POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (fds[1].revents) break; /* the child died (killed by hand?): the service replaces us */
        if (!fds[0].revents) continue;
        n = read(0, line + got, SCRATCH - 1 - got);
        if (n <= 0) break;
        got += n;
        if ((nl = memchr(line, '\n', got))) break;
        if (got >= SCRATCH - 1) break;
    }
    if (!nl || nl - line < 7 || strncmp(line, "claim ", 6) != 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return 0;
    }
    /* The claim: everything below reports failures on stdout, as "run" does. */
    die_to_stdout = 1;
    munmap(cfg.buf, cfg.mapped);
    cfg.n = 0;
    /* "claim SIZE\n" and SIZE bytes of the task's config, kept in a memfd for this parent and
       the child: no file to wait for. */
    long size = strtol(line + 6, NULL, 10);
    int fdv[MAX_FDS], nfd = 0;
    int mem = (int)syscall(SYS_memfd_create, "task-config", 1 /* MFD_CLOEXEC */);
    if (mem < 0 || size < 0) die("the task's config: %s", strerror(errno));
    size_t have = got - (size_t)(nl + 1 - line);
    if (have > (size_t)size) die("the task's config: more than its size");
    if (have && write(mem, nl + 1, have) != (ssize_t)have) die("the task's config: %s", strerror(errno));
    while ((long)have < size) {
        size_t want = (size_t)size - have < sizeof pump ? (size_t)size - have : sizeof pump;
        n = read(0, pump, want);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("the task's config: cut short");
        if (write(mem, pump, n) != n) die("the task's config: %s", strerror(errno));
        have += n;
    }
    fdv[nfd++] = mem;
    load_config_fd(dup(mem), "the task's config");
    for (int i = 0; i < cfg.n; i++) {
        const char *k = cfg.item[i].key, *v = cfg.item[i].val;
        if (nfd >= MAX_FDS && (strcmp(k, "bind_late") == 0 || strcmp(k, "copy_into") == 0))
            die("too many mounts");
        if (strcmp(k, "bind_late") == 0) {
            fdv[nfd++] = open_tree_of(v);
        } else if (strcmp(k, "copy_into") == 0) {
            const char *to;
            int dir = open_staged(v, &to);
            /* none staged: the config again, a placeholder that keeps the fds in order */
            fdv[nfd++] = dir >= 0 ? dir : dup(fdv[0]);
            if (fdv[nfd - 1] < 0) die("staged secrets: %s", strerror(errno));
        }
    }
    if (send_fds(sv[0], fdv, nfd) < 0) die("hand the task to the warm child: %s", strerror(errno));
    for (int i = 0; i < nfd; i++) close(fdv[i]);
    close(sv[0]);
    n = read(errp[0], why, sizeof why - 1);
    close(errp[0]);
    if (n > 0) {
        why[n] = 0;
        waitpid(child, NULL, 0);
        printf("error %s\n", why);
        return 127;
    }
    printf("started %d\n", child);
    fflush(stdout);
    const char *so = get("stdout"), *se = get("stderr");
    if (!so) close(outp[0]);
    if (!se) close(errlogp[0]);
    return supervise(child, so ? outp[0] : -1, se ? errlogp[0] : -1);
}

/* ---------- enter ---------- */

static int cmd_enter(void) {
    pid_t target = (pid_t)getnum("target", 0);
    if (target <= 0) die("no target pid");
    static const char *kinds[] = {"ipc", "uts", "net", "pid", "mnt"};
    int fds[5];
    char p[256];
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "/proc/%d/ns/%s", target, kinds[i]);
        fds[i] = open(p, O_RDONLY | O_CLOEXEC);
        if (fds[i] < 0) die("open %s: %s", p, strerror(errno));
    }
    snprintf(p, sizeof p, "/proc/%d/root", target);
    int rootfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) die("open %s: %s", p, strerror(errno));
    join_cgroups();
    for (int i = 0; i < 5; i++)
        if (setns(fds[i], 0) < 0) die("setns %s: %s", kinds[i], strerror(errno));
    if (fchdir(rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0)
        die("enter task root: %s", strerror(errno));
    pid_t child = fork();
    if (child < 0) die("fork: %s", strerror(errno));
    if (child == 0) {
        drop_privileges();
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("pdeathsig: %s", strerror(errno));
        exec_task();
    }
    /* Pass interrupts on to the command rather than dying and orphaning it. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static int cmd_park(void) {
    char b;
    for (;;) {
        ssize_t r = read(0, &b, 1);
        if (r == 0 || (r < 0 && errno != EINTR)) return 0;
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "park") == 0) return cmd_park();
    if (argc != 3) {
        fprintf(stderr, "usage: reconciler-shim run|enter CONFIG\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    load_config(argv[2]);
    if (strcmp(argv[1], "run") == 0) return cmd_run();
    if (strcmp(argv[1], "enter") == 0) return cmd_enter();
    if (strcmp(argv[1], "warm") == 0) return cmd_warm();
    fprintf(stderr, "usage: reconciler-shim run|enter CONFIG\n");
    return 2;
}
