"""Surface meshes (PLY, ASCII or binary) and 3D Slicer markups (`.mrk.json`, `.fcsv`).

Coordinates are returned in LPS, the space of the SlicerMorph meshes: RAS markups are
converted by negating x and y.
"""

from __future__ import annotations

import io
import json

import numpy as np
import trimesh

from competition.errors import SourceDataError

_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


def read_mesh(data: bytes, name: str) -> trimesh.Trimesh:
    """A triangle mesh from PLY bytes; vertices and faces are kept as stored (no merging)."""
    if not data.startswith(b"ply"):
        raise SourceDataError(f"{name}: not a PLY file (it must start with 'ply')")
    _check_ply_header(data, name)
    try:
        mesh = trimesh.load(io.BytesIO(data), file_type="ply", process=False, force="mesh")
    except Exception as e:  # trimesh's PLY parser raises many types on damaged files
        raise SourceDataError(f"{name}: unreadable PLY ({type(e).__name__}: {e})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise SourceDataError(f"{name}: the PLY holds no triangle mesh (no vertices or faces)")
    return mesh


def _check_ply_header(data: bytes, name: str) -> None:
    """Element counts must fit the file: a damaged header must not make the parser allocate
    gigabytes for a few bytes of data."""
    end = data.find(b"end_header")
    if end < 0:
        raise SourceDataError(f"{name}: PLY header has no end_header line")
    header = data[:end].decode("ascii", "replace").split("\n")
    binary = any(line.startswith("format binary") for line in header)
    body = len(data) - end
    lines = data.count(b"\n", end)
    total = 0
    for line in header:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "element":
            try:
                count = int(parts[2])
            except ValueError:
                raise SourceDataError(f"{name}: bad PLY element line {line.strip()!r}") from None
            if count < 0:
                raise SourceDataError(f"{name}: negative PLY element count")
            total += count
    # Each element takes at least one byte (binary) or one line (ASCII).
    if total > (body if binary else lines + 1):
        raise SourceDataError(f"{name}: PLY header announces {total} elements, more than the "
                              "file holds (truncated or damaged)")


def drop_nonfinite(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, int, int]:
    """The mesh without non-finite (NaN) vertices and the faces using them.

    Some VTK-exported meshes of the SlicerMorph set carry one or two NaN vertices; they are
    artefacts, not anatomy. Returns the cleaned mesh and the numbers of vertices and faces
    dropped.
    """
    vertices = np.asarray(mesh.vertices)
    finite = np.isfinite(vertices).all(axis=1)
    if finite.all():
        return mesh, 0, 0
    faces = np.asarray(mesh.faces)
    keep_faces = finite[faces].all(axis=1)
    new_index = np.cumsum(finite) - 1
    cleaned = trimesh.Trimesh(vertices[finite], new_index[faces[keep_faces]], process=False)
    return cleaned, int((~finite).sum()), int((~keep_faces).sum())


def write_mesh(mesh: trimesh.Trimesh) -> bytes:
    """Binary little-endian PLY bytes (deterministic)."""
    data: bytes = trimesh.exchange.ply.export_ply(mesh, encoding="binary",
                                                  include_attributes=False)
    return data


def read_markups(data: bytes, name: str) -> dict[str, np.ndarray]:
    """Landmarks by label from a `.mrk.json` or `.fcsv` markups file, in LPS."""
    if name.endswith(".json"):
        return _read_mrk_json(data, name)
    if name.endswith(".fcsv"):
        return _read_fcsv(data, name)
    raise SourceDataError(f"{name}: unknown markups format (expected .mrk.json or .fcsv)")


def _read_mrk_json(data: bytes, name: str) -> dict[str, np.ndarray]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
        markups = doc["markups"]
        markup = markups[0]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        raise SourceDataError(
            f"{name}: not a Slicer markups JSON ({type(e).__name__}: {e})") from None
    system = str(markup.get("coordinateSystem", "LPS")).upper()
    if system not in ("LPS", "RAS"):
        raise SourceDataError(f"{name}: unknown coordinateSystem {system!r}")
    points: dict[str, np.ndarray] = {}
    for k, cp in enumerate(markup.get("controlPoints") or []):
        try:
            label = str(cp.get("label") or k + 1)
            status = cp.get("positionStatus", "defined")
            xyz = np.array([float(v) for v in cp["position"]], dtype=np.float64)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise SourceDataError(f"{name}: control point {k + 1} has no valid position") from None
        if status != "defined":
            raise SourceDataError(f"{name}: landmark {label} is not placed ({status})")
        _add_point(points, label, xyz, system, name)
    if not points:
        raise SourceDataError(f"{name}: no control points")
    return points


def _read_fcsv(data: bytes, name: str) -> dict[str, np.ndarray]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceDataError(f"{name}: not UTF-8 text") from None
    system = "RAS"  # Slicer's default for files without the header line
    columns = ["id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label"]
    points: dict[str, np.ndarray] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            key, value = key.strip().lower(), value.strip()
            if key == "coordinatesystem":
                system = {"0": "RAS", "1": "LPS", "RAS": "RAS", "LPS": "LPS"}.get(value.upper(), "")
                if not system:
                    raise SourceDataError(f"{name}: line {line_no}: unknown coordinate system")
            elif key == "columns":
                columns = [c.strip() for c in value.split(",")]
            continue
        if not line.strip():
            continue
        fields = line.split(",")
        row = dict(zip(columns, fields, strict=False))
        try:
            xyz = np.array([float(row["x"]), float(row["y"]), float(row["z"])])
        except (KeyError, ValueError):
            raise SourceDataError(f"{name}: line {line_no}: x, y, z are not numbers") from None
        label = row.get("label", "").strip() or str(len(points) + 1)
        _add_point(points, label, xyz, system, f"{name}: line {line_no}")
    if not points:
        raise SourceDataError(f"{name}: no control points")
    return points


def _add_point(points: dict[str, np.ndarray], label: str, xyz: np.ndarray, system: str,
               where: str) -> None:
    if xyz.shape != (3,) or not np.isfinite(xyz).all():
        raise SourceDataError(f"{where}: landmark {label} has no finite 3D position")
    if label in points:
        raise SourceDataError(f"{where}: landmark label {label} appears twice")
    points[label] = xyz * _RAS_TO_LPS if system == "RAS" else xyz


def write_mrk_json(points: dict[str, np.ndarray]) -> bytes:
    """A minimal Slicer markups JSON (LPS, mm) that Slicer and `read_markups` both read."""
    control = [
        {
            "id": str(k + 1),
            "label": label,
            "position": [round(float(v), 6) for v in xyz],
            "positionStatus": "defined",
        }
        for k, (label, xyz) in enumerate(points.items())
    ]
    doc = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/"
        "Markups/Resources/Schema/markups-schema-v1.0.3.json#",
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "controlPoints": control,
            }
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()
