// Design notes: the limits every kind of session applies to the values it converts, in both directions, so that
// a value is accepted or refused the same way in-process and in isolated mode (docs/sessions.md, "Conversion
// contract"). The Python side's copy is python/interop_helpers/calls.py (MAX_DEPTH, MAX_RANK), used by the
// in-process result export and by the worker; ConversionContractTests checks that the two agree.
// Arguments are checked here, before anything is converted or sent: a reference cycle, an over-deep structure,
// a tensor of too many dimensions or a string that is not valid UTF-16 is the caller's mistake, so it is an
// UnsupportedArgumentException naming the position, never a stack overflow, a protocol error or changed data.
using Interop.Errors;

namespace Interop.Sessions;

/// <summary>Limits on the values passed to and returned from Python; the same for every kind of session.</summary>
public static class ConversionLimits
{
    /// <summary>
    /// How deeply lists, tuples and dicts may nest, for arguments and results: a value inside more than this many
    /// containers is refused (an argument with <see cref="UnsupportedArgumentException"/>; a result with a Python
    /// <c>ValueError</c>, as <see cref="PythonErrorException"/>). A self-referencing argument is refused as a cycle.
    /// </summary>
    public const int MaxDepth = 32;

    /// <summary>The most dimensions a tensor argument or result may have (NumPy 1.x's own limit; NumPy 2 allows 64).</summary>
    public const int MaxRank = 32;

    /// <summary>Refuses a value inside more than <see cref="MaxDepth"/> containers (<paramref name="depth"/>: how many enclose it).</summary>
    internal static void CheckDepth(object? value, int depth, string where)
    {
        if (depth > MaxDepth)
            throw new UnsupportedArgumentException(value?.GetType() ?? typeof(object), where,
                $"lists, tuples and dicts may nest at most {MaxDepth} deep; pass a flatter structure or a tensor");
    }

    /// <summary>Refuses a container that is already open on the path to it (<paramref name="open"/>): a reference cycle.</summary>
    internal static void CheckCycle(object container, string where, List<object> open)
    {
        foreach (var enclosing in open)
            if (ReferenceEquals(enclosing, container))
                throw new UnsupportedArgumentException(container.GetType(), where,
                    "it contains itself (a reference cycle); pass a tree of lists and dicts, not a graph");
    }

    /// <summary>Refuses a tensor of more than <see cref="MaxRank"/> dimensions.</summary>
    internal static void CheckRank(TensorArgument tensor, Type type, string where)
    {
        if (tensor.Shape.Count > MaxRank)
            throw new UnsupportedArgumentException(type, where,
                $"a tensor of {tensor.Shape.Count} dimensions; at most {MaxRank} are supported; reshape it first");
    }

    /// <summary>Refuses a string with an unpaired surrogate (UTF-16 that is not text: Python and UTF-8 cannot hold it unchanged).</summary>
    internal static void CheckText(string text, string where)
    {
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (!char.IsSurrogate(c))
                continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }
            throw new UnsupportedArgumentException(typeof(string), where,
                $"the string holds an unpaired surrogate U+{(int)c:X4} at index {i}, which is not text; fix the string or pass its bytes as a byte[]");
        }
    }
}
