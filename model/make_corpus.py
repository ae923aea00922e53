#!/usr/bin/env python3
"""Build the training corpus from Debian's perl-doc package (Perl's documentation in POD).

Usage (from the repository root):

    work=$(mktemp -d)
    (cd "$work" && apt-get download perl-doc && dpkg-deb -x perl-doc_*.deb pkg)
    python3 model/make_corpus.py "$work/pkg"

It reads the POD files of usr/share/perl/<version>/pod/ in sorted file-name order, converts each to
plain text (see pod_to_text), splits them by whole files into train and held-out (every 20th file,
starting at index HELDOUT_OFFSET, is held out) and writes

    model/corpus/train.txt.gz     documents joined by DOC_SEPARATOR (form feed, U+000C)
    model/corpus/heldout.txt.gz   the same for the held-out files
    model/corpus/SOURCES.md       package, version, licence, the files of each split

The gzip files have mtime 0 and no file name, so the same package gives the same bytes. numpy is not
needed: stdlib only.
"""
import argparse
import gzip
import hashlib
import html.entities
import io
import os
import re
import sys

# Documents in the corpus text files are separated by this character (it occurs in no source file;
# make_corpus checks).
DOC_SEPARATOR = '\x0c'
HELDOUT_EVERY = 20
HELDOUT_OFFSET = 0

# Files left out, with the reason (written to SOURCES.md).
EXCLUDED = {
    'perlgpl.pod': 'the GNU GPL text itself (licence: verbatim copies only)',
    'perlartistic.pod': 'the Artistic License text itself',
    'perlpodstyle.pod': 'under its own notice-preserving licence (RRA-KEEP-THIS-NOTICE), kept out for simplicity',
    'perltoc.pod': 'generated table of contents of the other files (duplicate text)',
    'perluniprops.pod': 'generated tables of Unicode properties (not prose or code)',
    'perlcn.pod': 'not English (Chinese)',
    'perljp.pod': 'not English (Japanese)',
    'perlko.pod': 'not English (Korean)',
    'perltw.pod': 'not English (Chinese)',
}

# ---------------------------------------------------------------------------------------------
# POD → plain text
# ---------------------------------------------------------------------------------------------

_E_NAMES = {'lt': '<', 'gt': '>', 'verbar': '|', 'sol': '/', 'quot': '"', 'amp': '&', 'apos': "'"}


def _entity(name):
    """The text of E<name>."""
    name = name.strip()
    if name in _E_NAMES:
        return _E_NAMES[name]
    try:
        if name.lower().startswith('0x'):
            cp = int(name[2:], 16)
        elif name.startswith('0') and len(name) > 1:
            cp = int(name, 8)
        elif name.isdigit():
            cp = int(name)
        else:
            cp = html.entities.name2codepoint[name]
    except (KeyError, ValueError):
        return 'E<%s>' % name
    if cp in (0xA0,):
        return ' '
    if cp in (0xAD, 0x200C, 0x200D):  # soft hyphen, zero-width (non-)joiner: nothing visible
        return ''
    return chr(cp)


def _split_top(text, ch):
    """Index of the first `ch` in text that is not inside a formatting code, or -1."""
    depth = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == '<' and i > 0 and text[i - 1].isupper():
            depth += 1
        elif c == '>' and depth > 0:
            depth -= 1
        elif c == ch and depth == 0:
            return i
        i += 1
    return -1


def _link(inner):
    """The text of L<inner> (perlpodspec's rendering, without the markup)."""
    bar = _split_top(inner, '|')
    if bar >= 0:
        return _codes(inner[:bar]).strip()
    if re.match(r'[A-Za-z][A-Za-z0-9+.-]*:[^:\s]', inner):  # a URL
        return _codes(inner)
    slash = _split_top(inner, '/')
    if slash >= 0:
        name, section = inner[:slash], inner[slash + 1:]
        section = section.strip()
        if len(section) >= 2 and section[0] == '"' and section[-1] == '"':
            section = section[1:-1]
        section = _codes(section)
        name = _codes(name).strip()
        return '"%s" in %s' % (section, name) if name else '"%s"' % section
    inner = inner.strip()
    if len(inner) >= 2 and inner[0] == '"' and inner[-1] == '"':
        return '"%s"' % _codes(inner[1:-1])
    return _codes(inner)


def _apply(code, inner):
    if code == 'E':
        return _entity(inner)
    if code in ('X', 'Z'):
        return ''
    if code == 'L':
        return _link(inner)
    return _codes(inner)  # I B C F S and unknown codes: their content


def _scan(text, i, closer):
    """Resolves formatting codes from text[i]: (output, end of the content, index after the closer), or
    None when the closer never comes. closer: None (to the end), 0 ('>'), n > 1 (whitespace, then n '>')."""
    out = []
    n = len(text)
    close_rx = re.compile(r'\s+' + '>' * closer) if closer else None
    while i < n:
        if closer == 0 and text[i] == '>':
            return ''.join(out), i, i + 1
        if close_rx is not None:
            m = close_rx.match(text, i)
            if m:
                return ''.join(out), i, m.end()
        c = text[i]
        if 'A' <= c <= 'Z' and i + 1 < n and text[i + 1] == '<':
            j = i + 1
            while j < n and text[j] == '<':
                j += 1
            count = j - (i + 1)
            if count > 1 and j < n and text[j].isspace():
                begin, res = j, _scan(text, j, count)  # C<< ... >>
            else:
                begin, res = i + 2, _scan(text, i + 2, 0)
            if res is not None:
                out.append(_apply(c, text[begin:res[1]].strip() if count > 1 and begin == j else text[begin:res[1]]))
                i = res[2]
                continue
        out.append(c)
        i += 1
    if closer is None:
        return ''.join(out), n, n
    return None


def _codes(text):
    """Text with POD formatting codes (I<> B<> C<> L<> E<> F<> S<> X<> Z<>, also C<< x >>) resolved."""
    return _scan(text, 0, None)[0]


def pod_to_text(pod):
    """Plain text of a POD document.

    - ordinary paragraphs: formatting codes resolved, line breaks kept as written;
    - verbatim paragraphs (indented: code, examples): kept exactly;
    - =head1..=head4: the heading text as its own paragraph; =item: its text ('*' bullets kept);
    - =over, =back, =cut, =pod, =encoding: dropped; =for paragraphs and =begin/=end blocks: dropped;
    - text outside POD (between =cut and the next command) is dropped.
    """
    pod = pod.replace('\r\n', '\n').replace('\r', '\n')
    paragraphs = re.split(r'\n[ \t]*\n', pod)
    out = []
    in_pod = False
    begin_stack = []
    for para in paragraphs:
        if not para.strip():
            continue
        para = para.strip('\n')
        if para.startswith('='):
            m = re.match(r'=([A-Za-z0-9]+)[ \t]*(.*)', para, re.S)
            if not m:
                continue
            cmd, arg = m.group(1), m.group(2).strip()
            in_pod = cmd != 'cut'
            if cmd == 'begin':
                begin_stack.append(arg.split()[0] if arg else '')
                continue
            if cmd == 'end':
                if begin_stack:
                    begin_stack.pop()
                continue
            if begin_stack or cmd in ('over', 'back', 'cut', 'pod', 'encoding', 'for'):
                continue
            if cmd in ('head1', 'head2', 'head3', 'head4'):
                out.append(_codes(arg))
            elif cmd == 'item':
                text = _codes(arg)
                if text:
                    out.append(text)
            continue
        if not in_pod or begin_stack:
            continue
        if para[0] in ' \t':
            out.append(para.expandtabs(8).rstrip())
        else:
            out.append(_codes(para))
    return '\n\n'.join(p for p in out if p.strip()) + '\n'


# ---------------------------------------------------------------------------------------------
# The package
# ---------------------------------------------------------------------------------------------

def find_pod_dir(pkg):
    base = os.path.join(pkg, 'usr', 'share', 'perl')
    if not os.path.isdir(base):
        sys.exit('make_corpus: %s has no usr/share/perl; unpack the package with dpkg-deb -x perl-doc_*.deb DIR' % pkg)
    versions = sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d, 'pod')))
    if len(versions) != 1:
        sys.exit('make_corpus: expected one usr/share/perl/<version>/pod folder in %s, found %r' % (pkg, versions))
    return os.path.join(base, versions[0], 'pod'), versions[0]


def package_version(pkg):
    path = os.path.join(pkg, 'usr', 'share', 'doc', 'perl-doc', 'changelog.Debian.gz')
    with gzip.open(path, 'rt', encoding='utf-8') as f:
        first = f.readline()
    m = re.match(r'(\S+) \(([^)]+)\) (\S+);', first)
    if not m:
        sys.exit('make_corpus: cannot read the version from %s' % path)
    return m.group(2), m.group(3).rstrip(';')


def write_gzip(path, text):
    """gzip with mtime 0 and no file name: the same text gives the same bytes."""
    raw = io.BytesIO()
    with gzip.GzipFile(filename='', mode='wb', fileobj=raw, compresslevel=9, mtime=0) as g:
        g.write(text.encode('utf-8'))
    with open(path, 'wb') as f:
        f.write(raw.getvalue())
    return len(raw.getvalue())


def split_names(names):
    """(train, heldout) lists: every HELDOUT_EVERY-th name from HELDOUT_OFFSET is held out."""
    train, heldout = [], []
    for i, name in enumerate(names):
        (heldout if i % HELDOUT_EVERY == HELDOUT_OFFSET else train).append(name)
    return train, heldout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('package_dir', help='the unpacked perl-doc package (dpkg-deb -x perl-doc_*.deb DIR)')
    ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus'),
                    help='output folder (default: model/corpus next to this script)')
    args = ap.parse_args(argv)

    pod_dir, perl_version = find_pod_dir(args.package_dir)
    version, dist = package_version(args.package_dir)
    with open(os.path.join(args.package_dir, 'usr', 'share', 'doc', 'perl-doc', 'copyright'), encoding='utf-8') as f:
        copyright_text = f.read()
    main_copyright = re.search(r'^Files: \*\nCopyright:\n (.*?)\nLicense: (.*?)\n', copyright_text, re.M)
    if not main_copyright:
        sys.exit('make_corpus: the copyright file has no "Files: *" stanza')

    all_names = sorted(n for n in os.listdir(pod_dir) if n.endswith('.pod'))
    missing = sorted(set(EXCLUDED) - set(all_names))
    if missing:
        sys.exit('make_corpus: excluded files not in the package: %s' % ', '.join(missing))
    names = [n for n in all_names if n not in EXCLUDED]
    train, heldout = split_names(names)

    texts = {}
    info = {}
    for name in names:
        with open(os.path.join(pod_dir, name), 'rb') as f:
            raw = f.read()
        text = pod_to_text(raw.decode('utf-8'))
        if DOC_SEPARATOR in text:
            sys.exit('make_corpus: %s contains the document separator U+000C' % name)
        texts[name] = text
        info[name] = (len(raw), hashlib.sha256(raw).hexdigest(), len(text.encode('utf-8')))

    os.makedirs(args.out, exist_ok=True)
    sizes = {}
    for split, files in (('train', train), ('heldout', heldout)):
        body = DOC_SEPARATOR.join(texts[n] for n in files)
        data = body.encode('utf-8')
        sizes[split] = (len(files), len(data), write_gzip(os.path.join(args.out, split + '.txt.gz'), body),
                        hashlib.sha256(data).hexdigest())

    lines = [
        '# Corpus sources',
        '',
        'Generated by `model/make_corpus.py` from the Debian package **perl-doc**, version **%s** (%s),'
        % (version, dist),
        'Perl %s documentation in POD (`usr/share/perl/%s/pod/*.pod`).' % (perl_version, perl_version),
        '',
        '## Licence',
        '',
        'From the package\'s `usr/share/doc/perl-doc/copyright` (stanza `Files: *`):',
        '',
        '    Copyright: %s' % main_copyright.group(1).strip(),
        '    License: %s' % main_copyright.group(2).strip(),
        '',
        'That is: free software; you can redistribute it and/or modify it under the terms of either the',
        'GNU General Public License as published by the Free Software Foundation, version 1 or (at your',
        'option) any later version, or the "Artistic License" which comes with Perl. Some files name their',
        'own authors (for example perlfaq*: Tom Christiansen, Nathan Torkington and others; perlretut and',
        'perlrequick: Mark Kvale; perlembed: Doug MacEachern and Jon Orwant; perlglossary: based on the',
        'glossary of Programming Perl, O\'Reilly Media, Inc.), each under the same "GPL-1+ or Artistic"',
        'terms; the package\'s copyright file lists them. The text here is converted (POD markup removed),',
        'not verbatim.',
        '',
        '## Regenerating',
        '',
        '    work=$(mktemp -d)',
        '    (cd "$work" && apt-get download perl-doc && dpkg-deb -x perl-doc_*.deb pkg)',
        '    python3 model/make_corpus.py "$work/pkg"',
        '',
        'The same package version gives the same bytes; the table gives the sha256 of each split\'s',
        'uncompressed text.',
        '',
        '## Format',
        '',
        '- `train.txt.gz`, `heldout.txt.gz`: UTF-8 text, gzip (mtime 0). Documents (one per source file, in',
        '  the order listed below) are joined by a form feed (U+000C), which no document contains.',
        '- POD conversion: formatting codes resolved (`C<x>` → `x`, `L<perlop/"Foo">` → `"Foo" in perlop`,',
        '  `E<gt>` → `>`, `X<>`/`Z<>` dropped), headings and `=item` texts kept as paragraphs, verbatim',
        '  (indented code) paragraphs kept exactly (tabs expanded), `=for`/`=begin`…`=end` dropped.',
        '- Split by whole files: of the %d files in sorted order, index i is held out when i %% %d == %d.'
        % (len(names), HELDOUT_EVERY, HELDOUT_OFFSET),
        '',
        '| split | files | text bytes | gzip bytes | text sha256 |',
        '| --- | --- | --- | --- | --- |',
    ]
    for split in ('train', 'heldout'):
        lines.append('| %s | %d | %d | %d | %s |' % ((split,) + sizes[split]))
    lines += ['', '## Left out', '', '| file | why |', '| --- | --- |']
    lines += ['| %s | %s |' % (n, EXCLUDED[n]) for n in sorted(EXCLUDED)]
    for split, files in (('train', train), ('heldout', heldout)):
        lines += ['', '## Files in %s (in order)' % split, '',
                  '| file | source bytes | source sha256 | text bytes |', '| --- | --- | --- | --- |']
        lines += ['| %s | %d | %s | %d |' % (n, info[n][0], info[n][1], info[n][2]) for n in files]
    with open(os.path.join(args.out, 'SOURCES.md'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    for split in ('train', 'heldout'):
        print('%s: %d files, %d text bytes, %d gzip bytes, text sha256 %s' % ((split,) + sizes[split]))


if __name__ == '__main__':
    main()
