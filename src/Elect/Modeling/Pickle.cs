using System.Numerics;
using System.Text;

namespace Elect.Modeling;

// A hand-written, restricted pickle reader. The one NuGet candidate (Razorvine.Pickle 1.5) is a
// full unpickler: unknown globals silently become generic "ClassDict" objects instead of being
// refused, its constructor registry is process-wide static state, it pre-registers constructors
// for many globals torch's weights_only unpickler never allows, and it knows nothing of torch's
// persistent storage ids. Wrapping it to enforce an allow-list at every GLOBAL would mean
// overriding its internals, so this reader implements the opcodes itself (about 60 of them, all
// pure data manipulation) and never calls, imports or instantiates anything: a global is only a
// name, checked against the allow-list the moment it is read.

/// <summary>
/// Refusals of a pickle that names a global (<c>module.name</c>) the reader does not allow: an
/// <see cref="InvalidDataException"/> whose <c>Data[<see cref="GlobalKey"/>]</c> is the global.
/// </summary>
public static class UnsafePickle
{
    /// <summary>The key of <see cref="Exception.Data"/> that holds the refused global (e.g. <c>posix.system</c>).</summary>
    public const string GlobalKey = "PickleGlobal";

    public static InvalidDataException Refuse(string message, string global)
    {
        var e = new InvalidDataException(message);
        e.Data[GlobalKey] = global;
        return e;
    }

    /// <summary>The refused global of <paramref name="e"/>, null if it is no such refusal.</summary>
    public static string? GlobalOf(Exception e) => e.Data[GlobalKey] as string;
}

/// <summary>What the reader does with a global outside the allow-list.</summary>
public enum UnknownGlobals
{
    /// <summary>Refuse the file, as <c>torch.load(weights_only=True)</c> does (the default).</summary>
    Refuse,

    /// <summary>
    /// Keep the global as an inert <see cref="PickleObject"/> record (its name, arguments and state
    /// as plain data) so that e.g. a Lightning checkpoint's hyper-parameter objects do not stop the
    /// reading of its <c>state_dict</c>. Nothing is called or instantiated; a tensor can still only
    /// be rebuilt by the allowed rebuild functions, and globals that can run code (<c>os</c>,
    /// <c>posix</c>, <c>subprocess</c>, <c>builtins.eval</c>, ...) are refused all the same.
    /// </summary>
    Opaque,
}

/// <summary>A Python tuple (structural equality, so it can be a dictionary key).</summary>
public sealed class PickleTuple(IReadOnlyList<object?> items) : IReadOnlyList<object?>, IEquatable<PickleTuple>
{
    public static readonly PickleTuple Empty = new([]);
    public IReadOnlyList<object?> Items { get; } = items;
    public int Count => Items.Count;
    public object? this[int index] => Items[index];
    public IEnumerator<object?> GetEnumerator() => Items.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    public bool Equals(PickleTuple? other) => other is not null && Items.SequenceEqual(other.Items, PickleKeyComparer.Instance);
    public override bool Equals(object? obj) => obj is PickleTuple t && Equals(t);
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var i in Items) h.Add(PickleKeyComparer.Instance.GetHashCode(i));
        return h.ToHashCode();
    }
    public override string ToString() => "(" + string.Join(", ", Items.Select(PickleFormat.Repr)) + (Count == 1 ? ",)" : ")");
}

/// <summary>A Python dict / OrderedDict / Counter: insertion-ordered, keys compared like Python's.</summary>
public sealed class PickleDict : IEnumerable<KeyValuePair<object?, object?>>
{
    private readonly List<KeyValuePair<object?, object?>> _items = [];
    private readonly Dictionary<object, int> _index = new(PickleKeyComparer.Instance);
    private static readonly object NoneKey = new();

    /// <summary><c>collections.OrderedDict</c> etc., null for a plain dict.</summary>
    public string? TypeName { get; init; }

    /// <summary>Attributes restored by BUILD (a state_dict's <c>_metadata</c>), else null.</summary>
    public object? State { get; set; }

    public int Count => _items.Count;

    public void Set(object? key, object? value)
    {
        var k = key ?? NoneKey;
        if (_index.TryGetValue(k, out int i)) _items[i] = new(key, value);
        else { _index[k] = _items.Count; _items.Add(new(key, value)); }
    }

    public bool TryGetValue(object? key, out object? value)
    {
        if (_index.TryGetValue(key ?? NoneKey, out int i)) { value = _items[i].Value; return true; }
        value = null;
        return false;
    }

    public bool ContainsKey(object? key) => _index.ContainsKey(key ?? NoneKey);

    public object? this[object? key] => TryGetValue(key, out var v) ? v : throw new KeyNotFoundException($"no key {PickleFormat.Repr(key)}");

    public IEnumerable<object?> Keys => _items.Select(p => p.Key);

    public IEnumerator<KeyValuePair<object?, object?>> GetEnumerator() => _items.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>A Python set or frozenset (insertion order kept).</summary>
public sealed class PickleSet(bool frozen) : IEnumerable<object?>
{
    private readonly List<object?> _items = [];
    private readonly HashSet<object?> _seen = new(PickleKeyComparer.Instance);
    public bool Frozen { get; } = frozen;
    public int Count => _items.Count;
    public void Add(object? item) { if (_seen.Add(item)) _items.Add(item); }
    public bool Contains(object? item) => _seen.Contains(item);
    public IEnumerator<object?> GetEnumerator() => _items.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>A global (class or function) named in a pickle: only its name, never resolved to code.</summary>
public sealed record PickleGlobal(string Module, string Name)
{
    public string FullName => $"{Module}.{Name}";
    public override string ToString() => FullName;
}

/// <summary>A torch dtype global such as <c>torch.float16</c> (as data, e.g. a config's <c>torch_dtype</c>).</summary>
public sealed record TorchDType(string Name)
{
    public override string ToString() => $"torch.{Name}";
}

/// <summary>
/// <see cref="UnknownGlobals.Opaque"/> only: what an unknown global would have built, kept as inert
/// data: the global, the arguments of its call (REDUCE / NEWOBJ), the BUILD state and any
/// list items or dict entries appended to it. Nothing was executed.
/// </summary>
public sealed class PickleObject(PickleGlobal type, PickleTuple? args)
{
    public PickleGlobal Type { get; } = type;
    public PickleTuple? Args { get; } = args;
    public object? State { get; set; }
    public List<object?> ListItems { get; } = [];
    public PickleDict DictItems { get; } = new();
    public override string ToString() => $"<opaque {Type.FullName}>";
}

internal sealed class PickleKeyComparer : IEqualityComparer<object?>
{
    public static readonly PickleKeyComparer Instance = new();

    // Python: 1 == 1.0 == True hash alike; strings and bytes compare by value
    public new bool Equals(object? a, object? b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a is null || b is null) return false;
        if (IsNumber(a) && IsNumber(b)) return ToDouble(a) == ToDouble(b) && ToBig(a) == ToBig(b);
        if (a is byte[] x && b is byte[] y) return x.AsSpan().SequenceEqual(y);
        return a.Equals(b);
    }

    public int GetHashCode(object? o) => o switch
    {
        null => 0,
        bool b => b ? 1 : 0,
        long l => l.GetHashCode(),
        BigInteger bi => bi >= long.MinValue && bi <= long.MaxValue ? ((long)bi).GetHashCode() : bi.GetHashCode(),
        double d => d == Math.Floor(d) && Math.Abs(d) < 9e18 ? ((long)d).GetHashCode() : d.GetHashCode(),
        byte[] bytes => bytes.Length == 0 ? 17 : HashCode.Combine(bytes.Length, bytes[0], bytes[^1]),
        _ => o.GetHashCode(),
    };

    private static bool IsNumber(object o) => o is bool or long or BigInteger or double;
    private static double ToDouble(object o) => o switch { bool b => b ? 1 : 0, long l => l, BigInteger bi => (double)bi, _ => (double)o };
    private static BigInteger ToBig(object o) => o switch
    {
        bool b => b ? 1 : 0, long l => l, BigInteger bi => bi,
        double d when !double.IsFinite(d) || d != Math.Floor(d) => BigInteger.MinusOne * 7919, // never equal to an int
        _ => new BigInteger((double)o),
    };
}

internal static class PickleFormat
{
    public static string Repr(object? o) => o switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        string s => $"'{s}'",
        byte[] b => $"b<{b.Length} bytes>",
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        _ => o.ToString() ?? "?",
    };

    public static string TypeOf(object? o) => o switch
    {
        null => "None",
        bool => "bool",
        long or BigInteger => "int",
        double => "float",
        string => "str",
        byte[] => "bytes",
        PickleTuple => "tuple",
        List<object?> => "list",
        PickleDict d => d.TypeName ?? "dict",
        PickleSet s => s.Frozen ? "frozenset" : "set",
        PickleGlobal g => g.FullName,
        PickleObject p => p.Type.FullName,
        TorchTensorRef => "tensor",
        _ => o.GetType().Name,
    };
}

/// <summary>
/// The restricted unpickler: pickle protocols 0 to 5, rebuilding only plain containers (dict,
/// list, tuple, set, int, float, str, bytes, None, bool) and what <see cref="Resolve"/> allows.
/// Persistent ids are handed to a callback (torch's storages).
/// </summary>
internal sealed class RestrictedUnpickler
{
    private readonly byte[] _data;
    private readonly string _source;
    private readonly Func<object?, object?> _persistentLoad;
    private readonly Func<PickleGlobal, object> _resolve;
    private readonly Func<object, PickleTuple, object?> _call;
    private int _pos;
    private List<object?> _stack = [];
    private readonly Stack<List<object?>> _marks = new();
    private readonly Dictionary<long, object?> _memo = [];

    /// <param name="data">The whole pickle.</param>
    /// <param name="source">The file (and member) named in errors.</param>
    /// <param name="persistentLoad">Maps a persistent id to its object (throws if not allowed).</param>
    /// <param name="resolve">Maps an allowed global to its stand-in; throws a refusal (<see cref="UnsafePickle"/>) for others.</param>
    /// <param name="call">Applies a resolved callable (REDUCE / NEWOBJ) to its arguments.</param>
    public RestrictedUnpickler(byte[] data, string source, Func<object?, object?> persistentLoad,
                               Func<PickleGlobal, object> resolve, Func<object, PickleTuple, object?> call)
    {
        _data = data;
        _source = source;
        _persistentLoad = persistentLoad;
        _resolve = resolve;
        _call = call;
    }

    /// <summary>Offset just after the STOP opcode (a file may hold several pickles back to back).</summary>
    public int Position => _pos;

    public object? Load(int start = 0)
    {
        _pos = start;
        _stack = [];
        _marks.Clear();
        _memo.Clear();
        int opAt = _pos;
        byte op = 0;
        try
        {
            while (true)
            {
                opAt = _pos;
                op = ReadByte();
                switch (op)
                {
                    case 0x80: // PROTO
                        if (ReadByte() > 5) throw Corrupt(opAt, "pickle protocol above 5");
                        break;
                    case 0x95: ReadBytes(8); break; // FRAME: a length prefix only
                    case (byte)'.': // STOP
                        if (_marks.Count != 0) throw Corrupt(opAt, "STOP inside a MARK");
                        return Pop();

                    // --- constants
                    case (byte)'N': Push(null); break;
                    case 0x88: Push(true); break;
                    case 0x89: Push(false); break;
                    case (byte)'I': Push(ParseIntLine(ReadLine())); break;
                    case (byte)'J': Push((long)BitConverter.ToInt32(ReadBytes(4))); break;
                    case (byte)'K': Push((long)ReadByte()); break;
                    case (byte)'M': Push((long)BitConverter.ToUInt16(ReadBytes(2))); break;
                    case (byte)'L': Push(Normalize(BigInteger.Parse(ReadLine().TrimEnd('L'), System.Globalization.CultureInfo.InvariantCulture))); break;
                    case 0x8a: Push(DecodeLong(ReadBytes(ReadByte()))); break; // LONG1
                    case 0x8b: Push(DecodeLong(ReadBytes(ReadLength(4, opAt)))); break; // LONG4
                    case (byte)'F': Push(double.Parse(ReadLine(), System.Globalization.CultureInfo.InvariantCulture)); break;
                    case (byte)'G': // BINFLOAT, big-endian
                    {
                        var b = ReadBytes(8).ToArray();
                        if (BitConverter.IsLittleEndian) Array.Reverse(b);
                        Push(BitConverter.ToDouble(b));
                        break;
                    }

                    // --- strings and bytes
                    case (byte)'S': Push(DecodePyStringLiteral(ReadLine(), opAt)); break;
                    case (byte)'T': Push(Latin1(ReadBytes(ReadLength(4, opAt)))); break; // BINSTRING (py2 str)
                    case (byte)'U': Push(Latin1(ReadBytes(ReadByte()))); break; // SHORT_BINSTRING
                    case (byte)'V': Push(DecodeRawUnicodeEscape(ReadLine())); break; // UNICODE
                    case (byte)'X': Push(Utf8(ReadBytes(ReadLength(4, opAt)))); break; // BINUNICODE
                    case 0x8c: Push(Utf8(ReadBytes(ReadByte()))); break; // SHORT_BINUNICODE
                    case 0x8d: Push(Utf8(ReadBytes(ReadLength(8, opAt)))); break; // BINUNICODE8
                    case (byte)'B': Push(ReadBytes(ReadLength(4, opAt)).ToArray()); break; // BINBYTES
                    case (byte)'C': Push(ReadBytes(ReadByte()).ToArray()); break; // SHORT_BINBYTES
                    case 0x8e: Push(ReadBytes(ReadLength(8, opAt)).ToArray()); break; // BINBYTES8
                    case 0x96: Push(ReadBytes(ReadLength(8, opAt)).ToArray()); break; // BYTEARRAY8 (as bytes)
                    case 0x97: case 0x98: // NEXT_BUFFER, READONLY_BUFFER
                        throw Corrupt(opAt, "out-of-band pickle buffers (protocol 5 NEXT_BUFFER) are not supported");

                    // --- containers
                    case (byte)'(': _marks.Push(_stack); _stack = []; break; // MARK
                    case (byte)')': Push(PickleTuple.Empty); break;
                    case 0x85: Push(new PickleTuple([Pop()])); break;
                    case 0x86: { var b = Pop(); var a = Pop(); Push(new PickleTuple([a, b])); break; }
                    case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new PickleTuple([a, b, c])); break; }
                    case (byte)'t': Push(new PickleTuple(PopMark(opAt).ToArray())); break;
                    case (byte)']': Push(new List<object?>()); break;
                    case (byte)'l': Push(PopMark(opAt)); break;
                    case (byte)'}': Push(new PickleDict()); break;
                    case (byte)'d': // DICT
                    {
                        var items = PopMark(opAt);
                        var d = new PickleDict();
                        SetItems(d, items, opAt);
                        Push(d);
                        break;
                    }
                    case 0x8f: Push(new PickleSet(frozen: false)); break; // EMPTY_SET
                    case 0x91: // FROZENSET
                    {
                        var s = new PickleSet(frozen: true);
                        foreach (var i in PopMark(opAt)) s.Add(i);
                        Push(s);
                        break;
                    }
                    case 0x90: // ADDITEMS
                    {
                        var items = PopMark(opAt);
                        if (Top() is not PickleSet { Frozen: false } set) throw Corrupt(opAt, $"ADDITEMS to a {PickleFormat.TypeOf(Top())}");
                        foreach (var i in items) set.Add(i);
                        break;
                    }
                    case (byte)'a': { var v = Pop(); Append(Top(), [v], opAt); break; } // APPEND
                    case (byte)'e': { var items = PopMark(opAt); Append(Top(), items, opAt); break; } // APPENDS
                    case (byte)'s': { var v = Pop(); var k = Pop(); SetItems(Top(), [k, v], opAt); break; } // SETITEM
                    case (byte)'u': { var items = PopMark(opAt); SetItems(Top(), items, opAt); break; } // SETITEMS

                    // --- stack and memo
                    case (byte)'0': Pop(); break; // POP
                    case (byte)'1': PopMark(opAt); break; // POP_MARK
                    case (byte)'2': Push(Top()); break; // DUP
                    case (byte)'p': _memo[long.Parse(ReadLine(), System.Globalization.CultureInfo.InvariantCulture)] = Top(); break; // PUT
                    case (byte)'q': _memo[ReadByte()] = Top(); break; // BINPUT
                    case (byte)'r': _memo[BitConverter.ToUInt32(ReadBytes(4))] = Top(); break; // LONG_BINPUT
                    case 0x94: _memo[_memo.Count] = Top(); break; // MEMOIZE
                    case (byte)'g': Push(Memo(long.Parse(ReadLine(), System.Globalization.CultureInfo.InvariantCulture), opAt)); break; // GET
                    case (byte)'h': Push(Memo(ReadByte(), opAt)); break; // BINGET
                    case (byte)'j': Push(Memo(BitConverter.ToUInt32(ReadBytes(4)), opAt)); break; // LONG_BINGET

                    // --- globals and objects: the only opcodes that name code, all checked
                    case (byte)'c': // GLOBAL
                    {
                        var module = ReadLine();
                        var name = ReadLine();
                        Push(_resolve(MapPython2(module, name)));
                        break;
                    }
                    case 0x93: // STACK_GLOBAL
                    {
                        var name = Pop();
                        var module = Pop();
                        if (module is not string m || name is not string n) throw Corrupt(opAt, "STACK_GLOBAL needs two strings");
                        Push(_resolve(MapPython2(m, n)));
                        break;
                    }
                    case (byte)'R': // REDUCE
                    {
                        var args = Pop();
                        var func = Pop();
                        if (args is not PickleTuple t) throw Corrupt(opAt, $"REDUCE arguments are a {PickleFormat.TypeOf(args)}, not a tuple");
                        Push(_call(func ?? throw Corrupt(opAt, "REDUCE on None"), t));
                        break;
                    }
                    case 0x81: // NEWOBJ
                    {
                        var args = Pop();
                        var cls = Pop();
                        if (args is not PickleTuple t) throw Corrupt(opAt, "NEWOBJ arguments are not a tuple");
                        Push(_call(cls ?? throw Corrupt(opAt, "NEWOBJ on None"), t));
                        break;
                    }
                    case 0x92: // NEWOBJ_EX
                    {
                        var kwargs = Pop();
                        var args = Pop();
                        var cls = Pop();
                        if (args is not PickleTuple t) throw Corrupt(opAt, "NEWOBJ_EX arguments are not a tuple");
                        if (kwargs is PickleDict { Count: > 0 }) throw Corrupt(opAt, "NEWOBJ_EX with keyword arguments is not supported");
                        Push(_call(cls ?? throw Corrupt(opAt, "NEWOBJ_EX on None"), t));
                        break;
                    }
                    case (byte)'i': // INST: module\nname\n, arguments since MARK
                    {
                        var module = ReadLine();
                        var name = ReadLine();
                        var cls = _resolve(MapPython2(module, name));
                        Push(_call(cls, new PickleTuple(PopMark(opAt).ToArray())));
                        break;
                    }
                    case (byte)'o': // OBJ: class and arguments since MARK
                    {
                        var items = PopMark(opAt);
                        if (items.Count == 0 || items[0] is null) throw Corrupt(opAt, "OBJ without a class");
                        Push(_call(items[0]!, new PickleTuple(items.Skip(1).ToArray())));
                        break;
                    }
                    case (byte)'b': // BUILD
                    {
                        var state = Pop();
                        Build(Top(), state, opAt);
                        break;
                    }
                    case (byte)'P': Push(_persistentLoad(ReadLine())); break; // PERSID
                    case (byte)'Q': Push(_persistentLoad(Pop())); break; // BINPERSID
                    case 0x82: case 0x83: case 0x84: // EXT1/2/4: the copyreg extension registry
                        throw UnsafePickle.Refuse($"refusing to load {_source}: pickle extension codes (EXT opcodes) name globals through copyreg and are not allowed", "copyreg.extension");
                    default:
                        throw Corrupt(opAt, $"unknown opcode 0x{op:x2}");
                }
            }
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or IndexOutOfRangeException or FormatException or OverflowException or ArgumentException)
        {
            throw Corrupt(opAt, $"opcode 0x{op:x2}: {e.Message}");
        }
    }

    private InvalidDataException Corrupt(int at, string what) =>
        new($"{_source}: corrupt or unsupported pickle at byte {at} ({what})");

    private byte ReadByte()
    {
        if (_pos >= _data.Length) throw Corrupt(_pos, "truncated: no STOP opcode");
        return _data[_pos++];
    }

    private ReadOnlySpan<byte> ReadBytes(long n)
    {
        if (n < 0 || n > _data.Length - _pos) throw Corrupt(_pos, $"truncated: {n} bytes announced, {_data.Length - _pos} left");
        var s = _data.AsSpan(_pos, (int)n);
        _pos += (int)n;
        return s;
    }

    private long ReadLength(int width, int opAt)
    {
        long n = width == 4 ? BitConverter.ToUInt32(ReadBytes(4)) : BitConverter.ToInt64(ReadBytes(8));
        if (n < 0 || n > _data.Length - _pos) throw Corrupt(opAt, $"length {n} past the end of the pickle");
        return n;
    }

    private string ReadLine()
    {
        int end = Array.IndexOf(_data, (byte)'\n', _pos);
        if (end < 0) throw Corrupt(_pos, "truncated: missing newline");
        var s = Latin1(_data.AsSpan(_pos, end - _pos));
        _pos = end + 1;
        return s.EndsWith('\r') ? s[..^1] : s;
    }

    private static string Latin1(ReadOnlySpan<byte> b) => Encoding.Latin1.GetString(b);
    private static string Utf8(ReadOnlySpan<byte> b) => Encoding.UTF8.GetString(b);

    private void Push(object? o) => _stack.Add(o);

    private object? Pop()
    {
        if (_stack.Count == 0) throw Corrupt(_pos, "stack underflow");
        var o = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return o;
    }

    private object? Top() => _stack.Count > 0 ? _stack[^1] : throw Corrupt(_pos, "stack underflow");

    private List<object?> PopMark(int opAt)
    {
        if (_marks.Count == 0) throw Corrupt(opAt, "no MARK on the stack");
        var items = _stack;
        _stack = _marks.Pop();
        return items;
    }

    private object? Memo(long key, int opAt) =>
        _memo.TryGetValue(key, out var v) ? v : throw Corrupt(opAt, $"memo key {key} was never stored");

    private void Append(object? target, List<object?> items, int opAt)
    {
        switch (target)
        {
            case List<object?> list: list.AddRange(items); break;
            case PickleObject o: o.ListItems.AddRange(items); break;
            default: throw Corrupt(opAt, $"can only append to lists, not to a {PickleFormat.TypeOf(target)}");
        }
    }

    private void SetItems(object? target, List<object?> items, int opAt)
    {
        if (items.Count % 2 != 0) throw Corrupt(opAt, "odd number of items for a dict");
        var dict = target switch
        {
            PickleDict d => d,
            PickleObject o => o.DictItems,
            _ => throw Corrupt(opAt, $"can only set items of dicts, not of a {PickleFormat.TypeOf(target)}"),
        };
        for (int i = 0; i < items.Count; i += 2)
        {
            var key = items[i];
            if (key is List<object?> or PickleDict or PickleSet { Frozen: false })
                throw Corrupt(opAt, $"unhashable dict key of type {PickleFormat.TypeOf(key)}");
            dict.Set(key, items[i + 1]);
        }
    }

    private void Build(object? target, object? state, int opAt)
    {
        switch (target)
        {
            case PickleDict d: d.State = state; break; // OrderedDict.__dict__ (a state_dict's _metadata)
            case PickleObject o: o.State = state; break;
            case TorchTensorRef t:
                // nn.Parameter / tensor __setstate__: Python attributes only; a legacy set_() state is not data we trust
                if (state is PickleTuple { Count: > 0 } tup && tup[0] is TorchStorageRef)
                    throw Corrupt(opAt, "BUILD of a tensor from a storage (legacy tensor pickling) is not supported");
                t.PythonState = state;
                break;
            default:
                throw Corrupt(opAt, $"can only BUILD dicts, tensors and parameters, not a {PickleFormat.TypeOf(target)}");
        }
    }

    private static PickleGlobal MapPython2(string module, string name) => module switch
    {
        "__builtin__" or "exceptions" => new("builtins", name),
        "copy_reg" => new("copyreg", name),
        _ => new(module, name),
    };

    private static object ParseIntLine(string s) => s switch
    {
        "01" => true,
        "00" => false,
        _ => Normalize(BigInteger.Parse(s, System.Globalization.CultureInfo.InvariantCulture)),
    };

    private static object DecodeLong(ReadOnlySpan<byte> b) =>
        b.Length == 0 ? 0L : Normalize(new BigInteger(b, isUnsigned: false, isBigEndian: false));

    private static object Normalize(BigInteger v) => v >= long.MinValue && v <= long.MaxValue ? (object)(long)v : v;

    // protocol 0 STRING: a Python 2 string literal in quotes with backslash escapes
    private string DecodePyStringLiteral(string s, int opAt)
    {
        if (s.Length < 2 || s[0] != s[^1] || (s[0] != '\'' && s[0] != '"')) throw Corrupt(opAt, "STRING is not quoted");
        var body = s[1..^1];
        var sb = new StringBuilder(body.Length);
        for (int i = 0; i < body.Length; i++)
        {
            char c = body[i];
            if (c != '\\' || i + 1 >= body.Length) { sb.Append(c); continue; }
            char e = body[++i];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '0': sb.Append('\0'); break;
                case 'x' when i + 2 < body.Length:
                    sb.Append((char)Convert.ToInt32(body.Substring(i + 1, 2), 16));
                    i += 2;
                    break;
                default: sb.Append(e); break; // \\ \' \"
            }
        }
        return sb.ToString();
    }

    // protocol 0 UNICODE: raw-unicode-escape (only \uXXXX and \UXXXXXXXX are escapes)
    private static string DecodeRawUnicodeEscape(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 1 < s.Length && (s[i + 1] == 'u' || s[i + 1] == 'U'))
            {
                int n = s[i + 1] == 'u' ? 4 : 8;
                if (i + 2 + n <= s.Length)
                {
                    sb.Append(char.ConvertFromUtf32(Convert.ToInt32(s.Substring(i + 2, n), 16)));
                    i += 1 + n;
                    continue;
                }
            }
            sb.Append(s[i]);
        }
        return sb.ToString();
    }
}
