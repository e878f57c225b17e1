#!/usr/bin/env python3
"""No dangling references in the docs: every relative link (and #anchor) and every file
path named in the repository's Markdown files must exist in the repository, and no doc may
point outside it. Usage: doc_links.py REPO_ROOT (exit 1 with the problems listed)."""
import os, re, sys, subprocess

root = os.path.abspath(sys.argv[1])
mds = subprocess.run(['git', '-C', root, 'ls-files', '--cached', '--others',
                      '--exclude-standard', '*.md'], capture_output=True, text=True,
                     check=True).stdout.split()

def slugs(path):
    out = set()
    text = open(path).read()
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    for m in re.finditer(r'^#{1,6}\s+(.*)$', text, re.M):
        h = m.group(1).strip().lower()
        h = re.sub(r'[^\w\- ]', '', h)
        out.add(h.replace(' ', '-'))
    return out

# generated at run time, or system paths: not repository files
GENERATED = ('target/', 'lab/', 'venv/')
# paths on the spool or in a lab directory (storage/README.md's layout), not in the repo
SPOOL = ('mail/', 'folders/', 'index/', 'queue/', 'health/', 'pending/', '.pending/', 'DIR/')
# names of files an installation has, not the repository
NOT_REPO_FILES = {'hamail.toml', 'lab.json', 'state.json', 'events.jsonl'}
ALL_FILES = subprocess.run(['git', '-C', root, 'ls-files'], capture_output=True, text=True,
                           check=True).stdout.split()
BASENAMES = {os.path.basename(f) for f in ALL_FILES} | \
    {os.path.basename(os.path.dirname(f)) + '/' for f in ALL_FILES}
problems, checked_links, checked_paths = [], 0, set()
crate_dirs = {'agent', 'storage', 'dnsctl', 'tests'}

for md in mds:
    full = os.path.join(root, md)
    d = os.path.dirname(full)
    text = open(full).read()
    for bad in ('../shared', '/work/', 'design.md', 'lab-recipes'):
        if bad in text:
            problems.append(f'{md}: refers outside the repository: {bad}')
    # Markdown links
    for m in re.finditer(r'\]\(([^)\s]+)\)', text):
        target = m.group(1)
        if re.match(r'[a-z]+:', target):
            continue
        checked_links += 1
        path, _, anchor = target.partition('#')
        tfile = os.path.normpath(os.path.join(d, path)) if path else full
        if not os.path.exists(tfile):
            problems.append(f'{md}: broken link {target}')
            continue
        if not tfile.startswith(root):
            problems.append(f'{md}: link leaves the repository: {target}')
        if anchor:
            if os.path.isdir(tfile):
                problems.append(f'{md}: anchor on a directory: {target}')
            elif anchor not in slugs(tfile):
                problems.append(f'{md}: no heading #{anchor} in {path or md}')
    # File paths in code spans and code blocks
    spans = re.findall(r'`([^`\n]+)`', text)
    blocks = re.findall(r'```[a-z]*\n(.*?)```', text, flags=re.S)
    words = []
    for s in spans:
        words += s.split()
    for b in blocks:
        words += re.findall(r'(?<![\w/.-])((?:\.ci|agent|storage|dnsctl|tests|ansible|vagrant)/[\w./{},*-]+)', b)
    for w in words:
        w = w.strip(',;:()"\'').rstrip('.')
        if w.startswith(('/', '~', 'http', '<', '$', '[')) or w.startswith(GENERATED) \
                or '://' in w or w.startswith(SPOOL) or w in NOT_REPO_FILES:
            continue
        if not re.search(r'/|\.(rs|sh|py|toml|yml|yaml|md|txt|j2|cfg|ini|lock)$', w):
            continue
        if re.search(r'[<>*=@]|\.\.\.|…', w) or w.endswith('.lock') or '{' in w and ',' not in w:
            continue
        if re.fullmatch(r'[\w.+-]+/[\w.+-]+', w) and not re.search(r'\.(rs|sh|py|toml|yml|md|txt)$', w) \
                and not os.path.exists(os.path.join(root, w)) and w.split('/')[0] not in \
                {'agent', 'storage', 'dnsctl', 'tests', 'ansible', 'vagrant', '.ci', 'auth', 'imap',
                 'pop3', 'smtp', 'relay', 'mbox', 'index', 'lock', 'queue', 'mime', 'support'}:
            continue  # e.g. ESMTP/ESMTPA, read/write, SMTP/IMAP: not paths
        # brace expansion a/{b,c}.rs
        cands = [w]
        mb = re.match(r'(.*)\{([^}]*)\}(.*)', w)
        if mb:
            cands = [mb.group(1) + x + mb.group(3) for x in mb.group(2).split(',')]
        for c in cands:
            bases = [root, d]
            top = md.split('/')[0]
            if top in crate_dirs:
                bases += [os.path.join(root, top, 'src'), os.path.join(root, top)]
            ok = any(os.path.exists(os.path.normpath(os.path.join(b, c))) for b in bases)
            if not ok and c.rstrip('/').count('/') == 0:
                # a bare file or directory name (in a table row or after its directory):
                # it must exist somewhere in the repository
                ok = c in BASENAMES or c + '/' in BASENAMES
                c = c + ' (by name)'
            checked_paths.add((md, c, ok))
            if not ok:
                problems.append(f'{md}: path not in the repository: {c}')

print(f'{len(mds)} Markdown files, {checked_links} relative links, '
      f'{len(checked_paths)} file paths checked')
for md, c, ok in sorted(checked_paths):
    if '-v' in sys.argv:
        print(('  ok  ' if ok else '  BAD ') + md + ': ' + c)
for p in problems:
    print('PROBLEM', p)
sys.exit(1 if problems else 0)
