"""Reading a dataset's original archives (or the folders they extract to) for the preparation tools.

An archive is read front to back as a stream (seeking back in gzip means decompressing again),
so a tool that needs the metadata before the images reads it twice; nothing is extracted to
disk. Every way the reading can fail (a truncated or damaged archive, a missing or non-UTF-8
metadata file, a malformed line, a MATLAB file that is not one) becomes an FRNError naming the
file and saying what to do.
"""
import io
import os
import tarfile
import zlib

from utils import FRNError

ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def damaged_archive(path, err):
    return FRNError(f'cannot read archive {path!r} ({type(err).__name__}: {err}); it is truncated or damaged: '
                    f'download it again, or give its extracted folder')


def tar_members(path, want):
    """(name, bytes) of each regular file of the tar at `path` (any compression) for which want(name) is true.

    `name` is the member's normalised path. The caller may stop early (break); the archive is closed.
    """
    try:
        with tarfile.open(path, mode='r|*') as tar:
            for member in tar:
                name = os.path.normpath(member.name)
                if member.isfile() and want(name):
                    yield name, tar.extractfile(member).read()
    except ARCHIVE_ERRORS as err:
        raise damaged_archive(path, err) from None


def check_tar(path, archive_name):
    """Refuse a path that is not a readable tar archive, telling a truncated one from another kind of file."""
    try:
        is_tar = tarfile.is_tarfile(path)
    except (EOFError, zlib.error, OSError) as err:   # gzip cut short before the first tar block
        raise FRNError(f'{path!r} is truncated or damaged ({type(err).__name__}: {err}); download '
                       f'{archive_name} again, or give the folder it extracts to') from None
    if not is_tar:
        raise FRNError(f'{path!r} is not a tar archive; give the archive {archive_name} '
                       f'(or the folder it extracts to)')


class FolderSource:
    """An extracted archive: metadata and images are files under `root`."""

    def __init__(self, root):
        self.root = root

    def where(self, rel):
        return os.path.join(self.root, rel)

    def read_all(self, rels):
        """The bytes of each file in `rels` that exists."""
        return dict(self.iter_files(rels))

    def missing(self, rels):
        """Files of `rels` that are not there: known before any image is processed."""
        return [rel for rel in rels if not os.path.isfile(self.where(rel))]

    def iter_files(self, rels):
        """(rel, bytes) for each file of `rels` that exists, in the order given."""
        for rel in rels:
            if os.path.isfile(self.where(rel)):
                try:
                    with open(self.where(rel), 'rb') as f:
                        data = f.read()
                except OSError as err:
                    raise FRNError(f'cannot read {self.where(rel)} ({err.strerror}); check its permissions, '
                                   f'or extract the archive again') from None
                yield rel, data


class TarSource:
    """An archive whose members are `prefix + rel`, read as a stream."""

    def __init__(self, path, prefix=''):
        self.path, self.prefix = path, prefix

    def where(self, rel):
        return f'{self.path}:{self.prefix}{rel}'

    def iter_files(self, rels):
        """(rel, bytes) of each wanted member, in archive order; stops once all were seen."""
        wanted, seen = set(rels), set()
        if not wanted:
            return

        def want(name):
            rel = name[len(self.prefix):] if name.startswith(self.prefix) else None
            return rel in wanted and rel not in seen

        for name, data in tar_members(self.path, want):
            rel = name[len(self.prefix):]
            seen.add(rel)
            yield rel, data
            if len(seen) == len(wanted):
                return

    def read_all(self, rels):
        return dict(self.iter_files(rels))

    def missing(self, rels):
        return []   # only known once the stream has been read


def open_source(path, tar_prefix, folder_candidates, key, archive_name):
    """A FolderSource or TarSource for `path`, which must be the archive or a folder it extracts to.

    A folder is recognised by `key` (a file or folder name) in one of `folder_candidates`.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        for sub in folder_candidates:
            if os.path.exists(os.path.join(path, sub, key)):
                return FolderSource(os.path.normpath(os.path.join(path, sub)))
        looked = ', '.join(os.path.normpath(os.path.join(path, sub, key)) for sub in folder_candidates)
        raise FRNError(f'{path!r} is not an extracted {archive_name}: found none of {looked}; give the archive '
                       f'{archive_name} or the folder it extracts to')
    if not os.path.exists(path):
        raise FRNError(f'{path!r} does not exist; give the archive {archive_name} or the folder it extracts to')
    check_tar(path, archive_name)
    return TarSource(path, tar_prefix)


def decode_text(data, where, archive_name):
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as err:
        raise FRNError(f'{where} is not a UTF-8 text file ({err}); the archive is damaged, '
                       f'download {archive_name} again') from None


def read_metadata(source, names, archive_name, page):
    """The text of each metadata file; a clear error naming the first one that is absent or not text."""
    texts = source.read_all(names)
    if not texts:
        raise FRNError(f'{source.where("")} holds none of {", ".join(names)}: this is not {archive_name} '
                       f'(another archive?). Give {archive_name} from {page}, or the folder it extracts to')
    for name in names:
        if name not in texts:
            raise FRNError(f'{source.where(name)} is missing: this is not a complete {archive_name}. '
                           f'Download {archive_name} again from {page} and give it (or its extracted folder)')
    return {name: decode_text(texts[name], source.where(name), archive_name) for name in names}


def rows(text, where, n_fields, maxsplit=-1):
    """(line number, fields) of each non-blank line, which must have exactly `n_fields` fields."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split(None if maxsplit < 0 else ' ', maxsplit)
        if len(fields) != n_fields:
            raise FRNError(f'{where} line {number} is {line.strip()!r}, expected {n_fields} fields; '
                           f'the file is damaged: download the archive again')
        yield number, fields


def numbers(fields, convert, where, number):
    """The fields converted by `convert` (int or float), with the line named when one is not a number."""
    try:
        return [convert(x) for x in fields]
    except ValueError:
        raise FRNError(f'{where} line {number} has {" ".join(fields)!r} where numbers belong; '
                       f'the file is damaged: download the archive again') from None


def unique(mapping, key, where, number):
    """Refuse a key seen twice: a repeated image or class means a damaged or edited list."""
    if key in mapping:
        raise FRNError(f'{where} line {number} repeats {key!r}; the file is damaged: download the archive again')


# --- MATLAB files (Stanford Cars and Dogs) -----------------------------------------------------------

def load_mat(data, where, download):
    """The variables of a MATLAB (v5) file's bytes, structs as objects with attributes (scipy's loadmat)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise FRNError(f'reading {where} needs scipy (MATLAB files): install it with `pip install scipy`') from None
    try:
        return loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
    except Exception as err:   # scipy raises ValueError, TypeError, NotImplementedError (v7.3), ... on bad input
        raise FRNError(f'{where} is not a readable MATLAB file ({type(err).__name__}: {err}); it is damaged or '
                       f'another kind of file: {download}') from None


def mat_records(mat, variable, where, download):
    """The entries of a MATLAB struct or cell array as a list (one entry is squeezed to a scalar by loadmat)."""
    import numpy as np
    if variable not in mat:
        raise FRNError(f'{where} has no variable {variable!r}: it is another MATLAB file; {download}')
    value = mat[variable]
    return list(value.ravel()) if isinstance(value, np.ndarray) else [value]


def mat_field(record, field, kind, where, number, download):
    """One field of one struct entry as an int or a str, with the entry named when it is missing or malformed."""
    import numpy as np
    value = np.asarray(getattr(record, field, None), dtype=object).ravel()
    ok = value.size == 1
    if ok and kind is int:
        try:
            ok = float(value[0]) == int(value[0])
        except (TypeError, ValueError, OverflowError):
            ok = False
    elif ok:
        ok = isinstance(value[0], str)
    if not ok:
        raise FRNError(f'{where} entry {number} has no valid {field!r} ({kind.__name__}): {value[:3]!r}; '
                       f'the file is damaged: {download}')
    return kind(value[0])


# --- datasets that come as several files --------------------------------------------------------------

def locate(paths, specs, dataset, page):
    """{key: source} for the files a dataset comes as, found among the given files and folders.

    specs: {key: (archive names, member)} where `member` is the top folder or file the archive
    holds (or that the user has already extracted). A given path may be one of those archives,
    the member itself, or a folder holding any of them. Anything else is refused.
    """
    found = {}
    for path in map(lambda p: os.path.abspath(os.fspath(p)), paths):
        if not os.path.exists(path):
            raise FRNError(f'{path!r} does not exist; give the {dataset} files from {page} (or their folders)')
        hits = 0
        for key, (archives, member) in specs.items():
            name = os.path.basename(path)
            if os.path.isfile(path) and name in archives:
                check_tar(path, name)
                found[key], hits = TarSource(path), hits + 1
            elif name == member:
                found[key], hits = FolderSource(os.path.dirname(path)), hits + 1
            elif os.path.isdir(path):
                for archive in archives:
                    if os.path.isfile(os.path.join(path, archive)):
                        check_tar(os.path.join(path, archive), archive)
                        found[key], hits = TarSource(os.path.join(path, archive)), hits + 1
                        break
                else:
                    if os.path.exists(os.path.join(path, member)):
                        found[key], hits = FolderSource(path), hits + 1
        if not hits:
            expected = sorted({n for archives, member in specs.values() for n in archives + (member,)})
            raise FRNError(f'{path!r} is none of the {dataset} files ({", ".join(expected)}) and holds none of '
                           f'them; give those files from {page} (or the folders holding them)')
    return found


def read_member(source, rel, download):
    """The bytes of one metadata file of a source, or an error saying it is missing."""
    data = source.read_all([rel]).get(rel)
    if data is None:
        raise FRNError(f'{source.where(rel)} is missing; {download}')
    return data
