/* The C floor for the boot path: the least a program can do to register the same
 * entries as `archctl enable --all --no-verify`: open binfmt_misc's `register` once and
 * write each register string with one write(2). No parsing, no emulator search, no
 * native probe. The strings are compiled in from `archctl enable --all --dry-run`
 * (benches/boot.sh generates floor-strings.h), so only the kernel's work remains.
 *
 *   musl-gcc -O2 -static -include floor-strings.h benches/floor.c -o floor
 *   floor [BINFMT_DIR]        (default /proc/sys/fs/binfmt_misc)
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static const char *const entries[] = { FLOOR_ENTRIES };

int main(int argc, char **argv) {
    char path[4096];
    const char *dir = argc > 1 ? argv[1] : "/proc/sys/fs/binfmt_misc";
    size_t n = strlen(dir);
    if (n + sizeof "/register" > sizeof path)
        return 1;
    memcpy(path, dir, n);
    memcpy(path + n, "/register", sizeof "/register");
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    int rc = 0;
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        size_t len = strlen(entries[i]);
        if (write(fd, entries[i], len) != (ssize_t)len)
            rc = 1;
    }
    return rc;
}
