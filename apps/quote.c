/* Quoting per output language; see quote.h for each contract. */
#include <errno.h>
#include <string.h>

#include "quote.h"

static int is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

const char *quote_find_ctl(const char *s)
{
	for (; *s; s++)
		if (is_ctl((unsigned char)*s))
			return s;
	return NULL;
}

int quote_gnuplot(FILE *f, const char *s, size_t n)
{
	size_t len = strnlen(s, n);

	/* checked first so that a refused string leaves no half a token */
	for (size_t i = 0; i < len; i++)
		if (is_ctl((unsigned char)s[i]))
			return -EINVAL;
	fputc('\'', f);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\'')
			fputc('\'', f);
		fputc(s[i], f);
	}
	fputc('\'', f);
	return 0;
}

void quote_csv(FILE *f, const char *s)
{
	size_t len = strlen(s);

	if (!strpbrk(s, ",\"\r\n") && !(len && (s[0] == ' ' || s[len - 1] == ' '))) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void quote_kv(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (is_ctl((unsigned char)*s))
			fprintf(f, "\\x%02x", (unsigned char)*s);
		else
			fputc(*s, f);
	}
}
