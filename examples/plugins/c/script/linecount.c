// `linecount PATH...`: a script in C (a plain `wasi:cli/command`, built on
// wasi-libc and WASI's preview1 adapter).
//
// Prints `PATH: N lines` per file, then a JSON summary as its last line:
// {"files", "lines", "env"}, `env` being the names of the variables it sees.
// A file it cannot read (outside its granted directories, say) is an error:
// `cannot read PATH: ...` on stderr and exit code 1.

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: linecount PATH...\n");
        return 1;
    }
    long total = 0;
    for (int i = 1; i < argc; i++) {
        FILE *file = fopen(argv[i], "r");
        if (!file) {
            fprintf(stderr, "cannot read %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        long lines = 0;
        int c;
        while ((c = fgetc(file)) != EOF) {
            if (c == '\n') lines++;
        }
        fclose(file);
        printf("%s: %ld lines\n", argv[i], lines);
        total += lines;
    }

    // The variables' names, sorted (names hold no characters JSON must escape
    // in practice; a real plugin would escape them).
    size_t count = 0;
    while (environ && environ[count]) count++;
    char **names = calloc(count + 1, sizeof *names);
    for (size_t i = 0; i < count; i++) {
        names[i] = strdup(environ[i]);
        char *eq = strchr(names[i], '=');
        if (eq) *eq = '\0';
    }
    qsort(names, count, sizeof *names, by_name);
    printf("{\"files\": %d, \"lines\": %ld, \"env\": [", argc - 1, total);
    for (size_t i = 0; i < count; i++) printf("%s\"%s\"", i ? ", " : "", names[i]);
    printf("]}\n");
    return 0;
}
