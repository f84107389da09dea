"""Sample the ImageNet subset of the direct ImageNet search (the PC-DARTS / DrNAS recipe).

    python scripts/sample_imagenet.py /data/imagenet/train /data/imagenet_search
    python scripts/sample_imagenet.py SOURCE DEST [--weight_fraction 0.1] [--arch_fraction 0.025]
                                      [--seed 0] [--mode symlink|list] [--force]

"We random sample 10% and 2.5% from the training set (each class) as train and val": from
every class folder of SOURCE (`SOURCE/<class>/*.JPEG`, the ImageNet training set) a
fraction `--weight_fraction` goes to `DEST/train/<class>/` (the weights' half) and a
disjoint `--arch_fraction` to `DEST/val/<class>/` (the architecture's half), the folder
names the search loader (common/data/imagenet_loader.py) reads.

Per class: the file names are sorted, a generator seeded from (--seed, class name) draws a
permutation, the first round(n * weight_fraction) files (rounded half up, at least 1) are
the train half and the next round(n * arch_fraction) (at least 1) the val half. So the
split does not depend on the filesystem's order and the same seed gives the same split.

--mode symlink (default) writes symbolic links to the absolute source files; --mode list
writes no links but DEST/train.txt and DEST/val.txt, one `<class>/<file><TAB><class index>`
a line (paths relative to SOURCE, index = position in the sorted class list). Both write
DEST/manifest.json last, so a DEST without it is an unfinished run. SOURCE is only read.

Rerunning with the same settings checks the sample and reports "already sampled"; other
settings (or an unfinished run, or other files in DEST) are refused unless --force, which
removes only what this script writes (train/, val/, train.txt, val.txt, manifest.json).
"""
import json
import os
import shutil
from pathlib import Path

from common.errors import ArgumentParser, UserError, exit_on_user_error
from imagenet_split import IMG_EXTENSIONS, check_fractions, is_image, sample_split

VERSION = 1
LAYOUT = "SOURCE/<class>/*.JPEG (the ImageNet training folder with one sub-folder per class)"
SPLITS = ("train", "val")
MANIFEST = "manifest.json"
# Everything this script writes in DEST; --force removes these and nothing else.
OWNED = ("train", "val", "train.txt", "val.txt", MANIFEST,
         ".train.txt.tmp", ".val.txt.tmp", ".manifest.json.tmp")
SETTINGS = ("version", "source", "seed", "weight_fraction", "arch_fraction", "mode")


# ----------------------------------------------------------------------------- SOURCE

def _few(names, limit=5):
    names = sorted(names)
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def list_class_images(folder):
    """A class folder's image files as paths relative to it (ImageFolder also walks sub-folders)."""
    found = []
    for here, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        rel = Path(here).relative_to(folder)
        found += [(rel / f).as_posix() for f in files if is_image(f)]
    return found


def scan_source(source):
    """{class: [image path relative to the class folder]} of SOURCE; a wrong layout is a UserError."""
    if not source.is_dir():
        what = "is not a folder" if source.exists() else "does not exist"
        raise UserError(f"SOURCE {source} {what}: expected {LAYOUT}")
    entries = list(os.scandir(source))
    classes = sorted(e.name for e in entries if e.is_dir())
    loose = [e.name for e in entries if e.is_file() and is_image(e.name)]
    if loose:
        raise UserError(f"SOURCE {source} holds images directly ({_few(loose, 3)}), not in class "
                        f"folders: expected {LAYOUT}; pass the folder that holds the class folders")
    if not classes:
        raise UserError(f"SOURCE {source} has no class sub-folders: expected {LAYOUT}")
    if set(classes) <= {"train", "val"} and any(p.is_dir() for p in (source / "train").glob("*")):
        raise UserError(f"SOURCE {source} looks like an ImageNet root (it has train/ with sub-folders): "
                        f"pass {source / 'train'}, the training set, as SOURCE")
    files = {name: list_class_images(source / name) for name in classes}
    empty = [name for name in classes if not files[name]]
    if empty:
        raise UserError(f"{len(empty)} of the {len(classes)} class folders of SOURCE {source} hold no "
                        f"images ({_few(empty)}): expected {LAYOUT} with extensions {' '.join(IMG_EXTENSIONS)}")
    single = [name for name in classes if len(files[name]) < 2]
    if single:
        raise UserError(f"{len(single)} class folders of SOURCE {source} hold a single image ({_few(single)}): "
                        "both halves (train and val) need an image of every class")
    return files


# ----------------------------------------------------------------------------- DEST

def check_paths(source, dest):
    """DEST must not be inside SOURCE (SOURCE is only read), nor SOURCE inside DEST's outputs."""
    if dest == source or source in dest.parents:
        raise UserError(f"DEST {dest} is inside SOURCE {source}: choose a DEST outside the training folder")
    for split in SPLITS:
        if source == dest / split or (dest / split) in source.parents:
            raise UserError(f"SOURCE {source} is inside DEST's {split}/ folder, which this script writes: "
                            "choose another DEST")


def read_manifest(dest):
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def written_split(dest, split, mode):
    """{class: {relative path: link target or None}} of what DEST holds for a split."""
    found = {}
    if mode == "list":
        path = dest / f"{split}.txt"
        if not path.is_file():
            return None
        for line in path.read_text().splitlines():
            rel, _, _ = line.partition("\t")
            name, _, inner = rel.partition("/")
            found.setdefault(name, {})[inner] = None
        return found
    folder = dest / split
    if not folder.is_dir():
        return None
    for here, _, files in os.walk(folder):  # links are not followed: they are the content
        for f in files:
            path = Path(here) / f
            name, _, inner = path.relative_to(folder).as_posix().partition("/")
            found.setdefault(name, {})[inner] = os.readlink(path) if path.is_symlink() else "not a link"
    return found


def matches(dest, source, plan, mode):
    """Whether DEST holds exactly the planned sample (and in symlink mode, the right links)."""
    for split, chosen in zip(SPLITS, plan):
        found = written_split(dest, split, mode)
        if found is None or set(found) != {c for c in chosen if chosen[c]}:
            return False
        for name, files in chosen.items():
            if set(found.get(name, {})) != set(files):
                return False
            if mode == "symlink" and any(found[name][f] != str(source / name / f) for f in files):
                return False
    return True


def remove_owned(dest):
    """Remove what this script wrote (manifest first, so an interrupted clean-up reads unfinished)."""
    for split in SPLITS:  # never delete real files: our folders hold only folders and links
        folder = dest / split
        if folder.is_dir() and not folder.is_symlink():
            for here, _, files in os.walk(folder):
                real = [f for f in files if not (Path(here) / f).is_symlink()]
                if real:
                    raise UserError(f"{Path(here) / real[0]} is a regular file, which this script never "
                                    f"writes: {folder} is not its output; remove it by hand or choose another DEST")
    for name in (MANIFEST, *OWNED):
        path = dest / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()


def prepare_dest(dest, settings, source, plan, force):
    """True if DEST already holds this sample; else DEST is empty of our files, ready to write."""
    if dest.exists() and not dest.is_dir():
        raise UserError(f"DEST {dest} exists and is not a folder")
    if not dest.exists():
        return False
    manifest = read_manifest(dest)
    same = manifest is not None and all(manifest.get(k) == settings[k] for k in SETTINGS)
    if same and matches(dest, source, plan, settings["mode"]):
        return True
    entries = {e.name for e in os.scandir(dest)}
    ours, others = entries & set(OWNED), entries - set(OWNED)
    if not force:
        if same:
            raise UserError(f"DEST {dest} holds a sample with these settings that does not match SOURCE now "
                            "(files added, removed or changed): rerun with --force to sample again")
        if manifest is not None:
            diff = [k for k in SETTINGS if manifest.get(k) != settings[k]]
            raise UserError(f"DEST {dest} holds a sample with other settings (different {', '.join(diff)}): "
                            "choose another DEST or pass --force to replace it")
        if (dest / MANIFEST).exists():
            raise UserError(f"DEST {dest} has an unreadable {MANIFEST}: rerun with --force to sample again")
        if ours:
            raise UserError(f"DEST {dest} holds an unfinished sample (no {MANIFEST}): rerun with --force")
        if others:
            raise UserError(f"DEST {dest} holds other files ({_few(others, 3)}): choose an empty or new folder, "
                            f"or pass --force (which removes only {', '.join(OWNED[:5])})")
    remove_owned(dest)
    return False


def _write_text(path, text):
    """Write through a temporary file and a rename, so a present file is a complete one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_sample(dest, source, plan, manifest):
    dest.mkdir(parents=True, exist_ok=True)
    classes = manifest["classes"]
    for split, chosen in zip(SPLITS, plan):
        if manifest["mode"] == "list":
            lines = [f"{name}/{f}\t{index}\n" for index, name in enumerate(classes) for f in chosen[name]]
            _write_text(dest / f"{split}.txt", "".join(lines))
            continue
        for name in classes:
            for f in chosen[name]:
                link = dest / split / name / f
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(source / name / f, link)
    _write_text(dest / MANIFEST, json.dumps(manifest, indent=1) + "\n")  # last: marks the run finished


def build_manifest(settings, files, plan):
    classes = sorted(files)
    counts = {split: {name: len(chosen[name]) for name in classes} for split, chosen in zip(SPLITS, plan)}
    return {**settings, "classes": classes,
            "source_images": sum(len(v) for v in files.values()),
            "totals": {split: sum(counts[split].values()) for split in SPLITS},
            "counts": counts}


def report(manifest, dest, already):
    fractions = {"train": manifest["weight_fraction"], "val": manifest["arch_fraction"]}
    head = "already sampled" if already else "sampled"
    print(f"{head}: {len(manifest['classes'])} classes of {manifest['source']} "
          f"({manifest['source_images']} images), seed {manifest['seed']}")
    for split in SPLITS:
        per_class = manifest["counts"][split].values()
        print(f"  {split}: {manifest['totals'][split]} images ({fractions[split]:g} of each class), "
              f"{min(per_class)}-{max(per_class)} per class")
    kind = "symbolic links in train/ and val/" if manifest["mode"] == "symlink" else "train.txt and val.txt"
    print(f"  -> {dest} ({kind}, {MANIFEST})")


# ----------------------------------------------------------------------------- main

def parse_args(argv):
    parser = ArgumentParser(description="Sample the per-class train (weights) and val (architecture) "
                                        "subsets of ImageNet for the direct ImageNet search.")
    parser.add_argument("source", help="ImageNet training folder, SOURCE/<class>/*.JPEG (only read)")
    parser.add_argument("dest", help="output folder: DEST/train/<class>/, DEST/val/<class>/, manifest.json")
    parser.add_argument("--weight_fraction", type=float, default=0.1, help="share of each class for train/")
    parser.add_argument("--arch_fraction", type=float, default=0.025, help="share of each class for val/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=("symlink", "list"), default="symlink",
                        help="symbolic links to the source files, or train.txt / val.txt file lists")
    parser.add_argument("--force", action="store_true",
                        help="replace a sample with other settings, or an unfinished one, in DEST")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    check_fractions(args.weight_fraction, args.arch_fraction)
    source, dest = Path(args.source).resolve(), Path(args.dest).resolve()
    check_paths(source, dest)
    files = scan_source(source)
    plan = sample_split(files, args.weight_fraction, args.arch_fraction, args.seed)
    settings = {"version": VERSION, "source": str(source), "seed": args.seed,
                "weight_fraction": args.weight_fraction, "arch_fraction": args.arch_fraction,
                "mode": args.mode}
    manifest = build_manifest(settings, files, plan)
    already = prepare_dest(dest, settings, source, plan, args.force)
    if not already:
        write_sample(dest, source, plan, manifest)
    report(manifest, dest, already)
    return manifest


if __name__ == "__main__":
    main()
