/*
 * Quoting for the text formats the programs write from user input: gnuplot
 * scripts, CSV fields and the 'key = value' lines of summary.txt and the
 * printed configuration.  JSON lives with its one writer in topology/
 * (hetsgd_topo_print_json_string).  Private to apps/.
 *
 * A control character is a byte below 0x20 or 0x7f: the bytes that end a
 * line, or that a terminal, gnuplot or a line-based reader would act on.
 */
#ifndef HETSGD_APPS_QUOTE_H
#define HETSGD_APPS_QUOTE_H

#include <stdio.h>

/* The first control character in s, or NULL when it has none. */
const char *quote_find_ctl(const char *s);

/*
 * Write the first n bytes of s (fewer at its end) as a gnuplot
 * single-quoted string: ' doubled, everything else as it is; gnuplot
 * expands neither backquotes nor @macros nor backslashes inside one.
 * Such a string cannot hold a newline, so 0 when written and -EINVAL,
 * writing nothing, when those bytes hold a control character.
 */
int quote_gnuplot(FILE *f, const char *s, size_t n);

/*
 * Write s as one CSV field (RFC 4180): as it is, or in double quotes with
 * " doubled when it holds a comma, a double quote, CR or LF (or starts or
 * ends with a space, which some readers trim).
 */
void quote_csv(FILE *f, const char *s);

/*
 * Write s as the value of a 'key = value' line: as it is when it holds no
 * control character, so that --config reads a printed configuration back
 * unchanged; each control character otherwise as \xNN, so that a value can
 * never end its line and forge another key.  Options never hold one (they
 * are refused when parsed); text from the system (device names, error
 * messages in the placement) could.
 */
void quote_kv(FILE *f, const char *s);

#endif
