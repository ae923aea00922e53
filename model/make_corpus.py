#!/usr/bin/env python3
r"""Build the training corpus from Debian's perl-doc and perl-modules packages (Perl's documentation in POD).

Usage (from the repository root):

    work=$(mktemp -d)
    (cd "$work" && apt-get download perl-doc perl-modules-5.36 && \
     dpkg-deb -x perl-doc_*.deb pkg && dpkg-deb -x perl-modules-5.36_*.deb mods)
    python3 model/make_corpus.py "$work/pkg" --modules "$work/mods"

perl-doc: the POD files of usr/share/perl/<version>/pod/ in sorted file-name order (less EXCLUDED).
perl-modules: the POD embedded in the core modules' .pm / .pod files of usr/share/perl/<version>/
(extract_pod: the POD blocks only, not the Perl code), in sorted path order, keeping only

  - files whose governing stanza of the package's DEP-5 copyright file (the last `Files:` pattern that
    matches the file's path in Perl's source tree, from module_sources.tsv; see map_module_sources.py)
    says `License: GPL-1+ or Artistic`;
  - English prose / code documentation (not MODULE_EXCLUDED), with at least MIN_MODULE_CHARS
    characters of text, not a duplicate of a perl-doc file.

Each document is converted to plain text (see pod_to_text). Each package's documents are split by whole
files into train and held-out (every 20th, starting at index HELDOUT_OFFSET, is held out; perl-doc and
perl-modules counted separately, so the perl-doc split is the one of the perl-doc-only corpus) and
written, perl-doc documents first, as

    model/corpus/train.txt.gz     documents joined by DOC_SEPARATOR (form feed, U+000C)
    model/corpus/heldout.txt.gz   the same for the held-out files
    model/corpus/SOURCES.md       packages, versions, licences, the files of each split, the exclusions

The gzip files have mtime 0 and no file name, so the same packages give the same bytes. numpy is not
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

# perl-modules: the licence a module file must have (its governing DEP-5 stanza's License field), the
# shortest document kept, and files left out for their content (written to SOURCES.md).
MODULE_LICENCES = ('GPL-1+ or Artistic', 'Artistic or GPL-1+')
MIN_MODULE_CHARS = 200
MODULE_EXCLUDED = {
    'I18N/LangTags/List.pm': 'a list of about 480 language tags and language names (data, not prose)',
}
# A module document whose text is a perl-doc document's, or shares at least this fraction of its
# DUP_WINDOW-line windows (lines of more than 20 characters) with one perl-doc document, is a duplicate.
DUP_WINDOW = 8
DUP_FRACTION = 0.5
MODULE_SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'module_sources.tsv')

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


def extract_pod(source):
    """The POD blocks of a Perl source file (.pm), joined: each from a line starting `=word` to the line
    `=cut` (dropped) or the end of the file. The Perl code outside them is dropped."""
    source = source.replace('\r\n', '\n').replace('\r', '\n')
    blocks = []
    block = None
    for line in source.split('\n'):
        if block is None:
            if re.match(r'=[A-Za-z]', line):
                block = [line]
        elif re.match(r'=cut(\s|$)', line):
            blocks.append('\n'.join(block))
            block = None
        else:
            block.append(line)
    if block is not None:
        blocks.append('\n'.join(block))
    return '\n\n'.join(blocks)


# ---------------------------------------------------------------------------------------------
# DEP-5 copyright files
# ---------------------------------------------------------------------------------------------

def parse_dep5(text):
    """The stanzas of a DEP-5 (machine-readable) copyright file that have a Files field, in file order:
    [{'files': [pattern, ...], 'copyright': 'line; line', 'license': 'first line'}]."""
    stanzas = []
    for para in re.split(r'\n[ \t]*\n', text.replace('\r\n', '\n')):
        fields = {}
        name = None
        for line in para.split('\n'):
            if line[:1] in (' ', '\t'):
                if name is not None:
                    fields[name].append(line.strip())
            elif ':' in line:
                name, value = line.split(':', 1)
                name = name.strip().lower()
                fields[name] = [value.strip()]
            else:
                name = None
        if 'files' not in fields:
            continue
        copyright_lines = [x for x in fields.get('copyright', []) if x and x != '.']
        stanzas.append({'files': ' '.join(fields['files']).split(),
                        'copyright': '; '.join(copyright_lines),
                        'license': fields.get('license', [''])[0]})
    return stanzas


def dep5_pattern(pattern):
    """A DEP-5 Files pattern as a regular expression: `*` any string (slashes too), `?` one character,
    a backslash escapes the next character; the pattern matches the whole path."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == '\\' and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append('.*' if c == '*' else '.' if c == '?' else re.escape(c))
        i += 1
    return re.compile(''.join(out) + r'\Z', re.S)


def governing_stanza(stanzas, path):
    """(index of the stanza, the pattern) that governs path: per DEP-5, the last stanza with a matching
    pattern. None when nothing matches."""
    found = None
    for i, st in enumerate(stanzas):
        for pat in st['files']:
            if dep5_pattern(pat).match(path):
                found = (i, pat)
                break
    return found


def read_module_sources(path=MODULE_SOURCES):
    """{installed path: (source path, how)} from module_sources.tsv."""
    table = {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.startswith('#') or not line.strip():
                continue
            rel, src, how = line.rstrip('\n').split('\t')
            table[rel] = (src, how)
    return table


def _windows(text):
    lines = [x.strip() for x in text.split('\n') if len(x.strip()) > 20]
    return {'\n'.join(lines[i:i + DUP_WINDOW]) for i in range(len(lines) - DUP_WINDOW + 1)}


def duplicate_of(text, perl_doc_texts, perl_doc_windows):
    """The perl-doc file a module document duplicates, or None."""
    for name, other in perl_doc_texts.items():
        if text == other:
            return name
    win = _windows(text)
    if not win:
        return None
    for name in sorted(perl_doc_windows):
        if len(win & perl_doc_windows[name]) >= DUP_FRACTION * len(win):
            return name
    return None


# ---------------------------------------------------------------------------------------------
# The packages
# ---------------------------------------------------------------------------------------------

def find_pod_dir(pkg):
    base = os.path.join(pkg, 'usr', 'share', 'perl')
    if not os.path.isdir(base):
        sys.exit('make_corpus: %s has no usr/share/perl; unpack the package with dpkg-deb -x perl-doc_*.deb DIR' % pkg)
    versions = sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d, 'pod')))
    if len(versions) != 1:
        sys.exit('make_corpus: expected one usr/share/perl/<version>/pod folder in %s, found %r' % (pkg, versions))
    return os.path.join(base, versions[0], 'pod'), versions[0]


def find_module_dir(pkg):
    """(usr/share/perl/<version> of an unpacked perl-modules package, version); the one real folder
    (5.36 is a symbolic link to 5.36.0)."""
    base = os.path.join(pkg, 'usr', 'share', 'perl')
    if not os.path.isdir(base):
        sys.exit('make_corpus: %s has no usr/share/perl; unpack the package with dpkg-deb -x perl-modules-*.deb DIR' % pkg)
    versions = sorted(d for d in os.listdir(base)
                      if os.path.isdir(os.path.join(base, d)) and not os.path.islink(os.path.join(base, d)))
    if len(versions) != 1:
        sys.exit('make_corpus: expected one usr/share/perl/<version> folder in %s, found %r' % (pkg, versions))
    return os.path.join(base, versions[0]), versions[0]


def module_files(root):
    """Sorted relative paths ('/'-separated) of the .pm and .pod files under root."""
    rels = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(('.pm', '.pod')):
                rels.append(os.path.relpath(os.path.join(d, f), root).replace(os.sep, '/'))
    return sorted(rels)


def doc_package(pkg, prefix):
    """The package name under usr/share/doc/ of an unpacked package (perl-doc, perl-modules-5.36)."""
    names = sorted(n for n in os.listdir(os.path.join(pkg, 'usr', 'share', 'doc')) if n.startswith(prefix))
    if len(names) != 1:
        sys.exit('make_corpus: expected one usr/share/doc/%s* in %s, found %r' % (prefix, pkg, names))
    return names[0]


def package_version(pkg, name='perl-doc'):
    path = os.path.join(pkg, 'usr', 'share', 'doc', name, 'changelog.Debian.gz')
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


def read_perl_doc(pkg):
    """The perl-doc package: its documents, converted, and their split."""
    pod_dir, perl_version = find_pod_dir(pkg)
    version, dist = package_version(pkg, 'perl-doc')
    with open(os.path.join(pkg, 'usr', 'share', 'doc', 'perl-doc', 'copyright'), encoding='utf-8') as f:
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
    return {'version': version, 'dist': dist, 'perl_version': perl_version, 'names': names,
            'copyright': main_copyright.group(1).strip(), 'license': main_copyright.group(2).strip(),
            'texts': texts, 'info': info, 'train': train, 'heldout': heldout}


def read_modules(pkg, perl_doc, sources_path=MODULE_SOURCES):
    """The perl-modules package: the module documents kept, converted, their split, and the files left
    out with the reason."""
    root, perl_version = find_module_dir(pkg)
    name = doc_package(pkg, 'perl-modules')
    version, dist = package_version(pkg, name)
    if (version, perl_version) != (perl_doc['version'], perl_doc['perl_version']):
        sys.exit('make_corpus: %s %s (Perl %s) is not the version of perl-doc %s (Perl %s)'
                 % (name, version, perl_version, perl_doc['version'], perl_doc['perl_version']))
    with open(os.path.join(pkg, 'usr', 'share', 'doc', name, 'copyright'), encoding='utf-8') as f:
        stanzas = parse_dep5(f.read())
    sources = read_module_sources(sources_path)
    rels = module_files(root)
    if set(rels) != set(sources):
        extra = sorted(set(rels) - set(sources))
        gone = sorted(set(sources) - set(rels))
        sys.exit('make_corpus: %s does not describe this package (%d files not in it: %s; %d not in the package: %s); '
                 'regenerate it with map_module_sources.py'
                 % (os.path.basename(sources_path), len(extra), ', '.join(extra[:5]), len(gone), ', '.join(gone[:5])))
    perl_doc_windows = {n: _windows(t) for n, t in perl_doc['texts'].items()}

    kept, texts, info, excluded = [], {}, {}, {}
    for rel in rels:
        src = sources[rel][0]
        gov = governing_stanza(stanzas, src)
        if gov is None:
            excluded[rel] = 'no copyright stanza matches %s' % src
            continue
        licence = stanzas[gov[0]]['license']
        if licence not in MODULE_LICENCES:
            excluded[rel] = 'licence %s (stanza `Files: %s`)' % (licence, gov[1])
            continue
        if rel in MODULE_EXCLUDED:
            excluded[rel] = MODULE_EXCLUDED[rel]
            continue
        with open(os.path.join(root, rel), 'rb') as f:
            raw = f.read()
        text = pod_to_text(extract_pod(raw.decode('utf-8')))
        chars = len(text.strip())
        if chars == 0:
            excluded[rel] = 'no POD'
            continue
        if chars < MIN_MODULE_CHARS:
            excluded[rel] = 'POD too short (%d characters of text)' % chars
            continue
        dup = duplicate_of(text, perl_doc['texts'], perl_doc_windows)
        if dup:
            excluded[rel] = 'duplicates perl-doc %s' % dup
            continue
        if DOC_SEPARATOR in text:
            sys.exit('make_corpus: %s contains the document separator U+000C' % rel)
        kept.append(rel)
        texts[rel] = text
        info[rel] = (src, gov[0], gov[1], len(raw), hashlib.sha256(raw).hexdigest(), len(text.encode('utf-8')))
    missing = sorted(set(MODULE_EXCLUDED) - set(rels))
    if missing:
        sys.exit('make_corpus: excluded module files not in the package: %s' % ', '.join(missing))
    train, heldout = split_names(kept)
    return {'name': name, 'version': version, 'dist': dist, 'perl_version': perl_version, 'stanzas': stanzas,
            'sources': sources, 'files': rels, 'names': kept, 'texts': texts, 'info': info, 'excluded': excluded,
            'train': train, 'heldout': heldout}


def _cell(text):
    return text.replace('|', '\\|')


def sources_md(doc, mods, sizes, parts):
    """The text of SOURCES.md."""
    pv = doc['perl_version']
    stanzas = mods['stanzas']
    used = {}
    for rel in mods['names']:
        _, si, pat = mods['info'][rel][:3]
        used.setdefault(si, [set(), 0])
        used[si][0].add(pat)
        used[si][1] += 1
    left_licences = sorted({why.split(' (stanza')[0][len('licence '):] for why in mods['excluded'].values()
                            if why.startswith('licence ')})
    reasons = {}
    for why in mods['excluded'].values():
        key = ('licence' if why.startswith('licence ') else 'too short' if why.startswith('POD too short')
               else 'duplicate' if why.startswith('duplicates') else 'no POD' if why == 'no POD' else 'content')
        reasons[key] = reasons.get(key, 0) + 1
    lines = [
        '# Corpus sources',
        '',
        'Generated by `model/make_corpus.py` from two Debian packages of Perl %s, both version **%s** (%s):'
        % (pv, doc['version'], doc['dist']),
        '',
        '- **perl-doc**: Perl\'s documentation in POD (`usr/share/perl/%s/pod/*.pod`);' % pv,
        '- **%s**: the POD of the core modules, embedded in their `.pm` files or in `.pod` files' % mods['name'],
        '  (`usr/share/perl/%s/**/*.pm`, `**/*.pod`; only the POD blocks, not the Perl code around them).' % pv,
        '',
        '## Licence',
        '',
        '### perl-doc',
        '',
        'From the package\'s `usr/share/doc/perl-doc/copyright` (stanza `Files: *`):',
        '',
        '    Copyright: %s' % doc['copyright'],
        '    License: %s' % doc['license'],
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
        '### %s' % mods['name'],
        '',
        'The package\'s `usr/share/doc/%s/copyright` (the same file as perl-doc\'s) is a DEP-5 file of %d'
        % (mods['name'], len(stanzas)),
        'stanzas with a `Files:` field, whose patterns name paths of Perl\'s *source* tree. `model/module_sources.tsv`',
        'maps each installed file to its source path (written by `model/map_module_sources.py` from Perl\'s git',
        'tree at v%s: the byte-identical source file, else the one source file of the same module path, which' % pv,
        'a Debian patch changed, else for a file made at build time the source that makes it). Per DEP-5 the',
        'last stanza with a matching pattern governs a file. Only files whose governing stanza says',
        '`License: %s` are used: the same terms as perl-doc (the GNU GPL, version 1 or later, or the' % MODULE_LICENCES[0],
        'Artistic License that comes with Perl). Files under any other licence (here: %s) are left out'
        % ', '.join('`%s`' % x for x in left_licences),
        '(listed below). The stanzas that govern the files used, with their copyright holders:',
        '',
        '| stanza (the matching `Files:` pattern) | Copyright | License | files |',
        '| --- | --- | --- | --- |',
    ]
    for si in sorted(used):
        pats, n = used[si]
        lines.append('| %s | %s | %s | %d |' % (', '.join('`%s`' % p for p in sorted(pats)),
                                               _cell(stanzas[si]['copyright']), stanzas[si]['license'], n))
    lines += [
        '',
        'The text here is converted (POD markup removed), not verbatim.',
        '',
        '## Regenerating',
        '',
        '    work=$(mktemp -d)',
        '    (cd "$work" && apt-get download perl-doc=%s %s=%s && \\' % (doc['version'], mods['name'], mods['version']),
        '     dpkg-deb -x perl-doc_*.deb pkg && dpkg-deb -x %s_*.deb mods)' % mods['name'],
        '    python3 model/make_corpus.py "$work/pkg" --modules "$work/mods"',
        '',
        'The same package versions give the same bytes; the table gives the sha256 of each split\'s',
        'uncompressed text. `model/module_sources.tsv` (installed path → source path) is rewritten, for',
        'another Perl version, by `python3 model/map_module_sources.py PERL5_GIT "$work/mods" --tag vX.Y.Z`',
        '(PERL5_GIT: a clone of https://github.com/Perl/perl5).',
        '',
        '## Format',
        '',
        '- `train.txt.gz`, `heldout.txt.gz`: UTF-8 text, gzip (mtime 0). Documents (one per source file, in',
        '  the order listed below: the perl-doc files, then the %s files) are joined by a form' % mods['name'],
        '  feed (U+000C), which no document contains.',
        '- POD conversion: formatting codes resolved (`C<x>` → `x`, `L<perlop/"Foo">` → `"Foo" in perlop`,',
        '  `E<gt>` → `>`, `X<>`/`Z<>` dropped), headings and `=item` texts kept as paragraphs, verbatim',
        '  (indented code) paragraphs kept exactly (tabs expanded), `=for`/`=begin`…`=end` dropped. Of a',
        '  module file only its POD blocks are read (each from a line `=word` to the line `=cut` or the end).',
        '- Split by whole files, each package on its own: of the %d perl-doc files in sorted order and of the'
        % len(doc['names']),
        '  %d %s files kept, in sorted path order, index i is held out when i %% %d == %d.'
        % (len(mods['names']), mods['name'], HELDOUT_EVERY, HELDOUT_OFFSET),
        '',
        '| split | files | text bytes | gzip bytes | text sha256 |',
        '| --- | --- | --- | --- | --- |',
    ]
    for split in ('train', 'heldout'):
        lines.append('| %s | %d | %d | %d | %s |' % ((split,) + sizes[split]))
    lines += ['', 'By package (document text bytes, without the separators):', '',
              '| package | split | files | text bytes |', '| --- | --- | --- | --- |']
    for pkg, split, n, b in parts:
        lines.append('| %s | %s | %d | %d |' % (pkg, split, n, b))
    lines += ['', '## Left out', '', '### perl-doc', '', '| file | why |', '| --- | --- |']
    lines += ['| %s | %s |' % (n, EXCLUDED[n]) for n in sorted(EXCLUDED)]
    lines += ['', '### %s' % mods['name'], '',
              'Of its %d `.pm` / `.pod` files, %d are kept and %d left out: %s.'
              % (len(mods['files']), len(mods['names']), len(mods['excluded']),
                 ', '.join('%d %s' % (reasons[k], k) for k in ('licence', 'content', 'no POD', 'too short', 'duplicate')
                           if k in reasons)),
              'No module document duplicates a perl-doc file (the same text, or %d %% of its %d-line windows).'
              % (DUP_FRACTION * 100, DUP_WINDOW) if 'duplicate' not in reasons else
              'Duplicates: the same text as a perl-doc file, or %d %% of its %d-line windows in one.'
              % (DUP_FRACTION * 100, DUP_WINDOW),
              '', '| file | source | why |', '| --- | --- | --- |']
    lines += ['| %s | %s | %s |' % (r, mods['sources'][r][0], _cell(mods['excluded'][r])) for r in sorted(mods['excluded'])]
    for split in ('train', 'heldout'):
        lines += ['', '## Files in %s (in order)' % split, '', '### perl-doc (`usr/share/perl/%s/pod/`)' % pv, '',
                  '| file | source bytes | source sha256 | text bytes |', '| --- | --- | --- | --- |']
        lines += ['| %s | %d | %s | %d |' % ((n,) + doc['info'][n]) for n in doc[split]]
        lines += ['', '### %s (`usr/share/perl/%s/`)' % (mods['name'], pv), '',
                  '| file | source (Perl %s tree) | stanza | source bytes | source sha256 | text bytes |' % pv,
                  '| --- | --- | --- | --- | --- | --- |']
        for r in mods[split]:
            src, _, pat, nbytes, sha, tbytes = mods['info'][r]
            lines.append('| %s | %s | `%s` | %d | %s | %d |' % (r, src, pat, nbytes, sha, tbytes))
    return '\n'.join(lines) + '\n'


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('package_dir', help='the unpacked perl-doc package (dpkg-deb -x perl-doc_*.deb DIR)')
    ap.add_argument('--modules', required=True, metavar='DIR',
                    help='the unpacked perl-modules package (dpkg-deb -x perl-modules-5.36_*.deb DIR)')
    ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus'),
                    help='output folder (default: model/corpus next to this script)')
    args = ap.parse_args(argv)

    doc = read_perl_doc(args.package_dir)
    mods = read_modules(args.modules, doc)

    os.makedirs(args.out, exist_ok=True)
    sizes = {}
    parts = []
    for split in ('train', 'heldout'):
        docs = [doc['texts'][n] for n in doc[split]] + [mods['texts'][r] for r in mods[split]]
        body = DOC_SEPARATOR.join(docs)
        data = body.encode('utf-8')
        sizes[split] = (len(docs), len(data), write_gzip(os.path.join(args.out, split + '.txt.gz'), body),
                        hashlib.sha256(data).hexdigest())
        for pkg, names, texts in (('perl-doc', doc[split], doc['texts']), (mods['name'], mods[split], mods['texts'])):
            parts.append((pkg, split, len(names), sum(len(texts[n].encode('utf-8')) for n in names)))
    parts.sort(key=lambda p: (p[0] != 'perl-doc', p[1] != 'train'))
    with open(os.path.join(args.out, 'SOURCES.md'), 'w', encoding='utf-8') as f:
        f.write(sources_md(doc, mods, sizes, parts))
    for split in ('train', 'heldout'):
        print('%s: %d files, %d text bytes, %d gzip bytes, text sha256 %s' % ((split,) + sizes[split]))
    for p in parts:
        print('  %s %s: %d files, %d text bytes' % p)
    print('%s: %d files left out' % (mods['name'], len(mods['excluded'])))


if __name__ == '__main__':
    main()
