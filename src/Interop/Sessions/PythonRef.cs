namespace Interop.Sessions;

/// <summary>
/// An opaque handle to a Python object in one <see cref="PythonSession"/>: a module, a function, an
/// <c>nn.Module</c>, anything. It can be passed back as an argument to calls in the same session.
/// Dispose it to drop the reference (the session also drops it when disposed).
/// </summary>
public abstract class PythonRef : IDisposable
{
    /// <summary>For implementations.</summary>
    protected PythonRef(PythonSession session)
    {
        ArgumentNullException.ThrowIfNull(session);
        Session = session;
    }

    /// <summary>The session the object lives in.</summary>
    public PythonSession Session { get; }

    /// <summary>True once <see cref="Dispose()"/> ran.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>The Python type's qualified name, e.g. <c>torch.nn.modules.linear.Linear</c>.</summary>
    public abstract string PythonType { get; }

    /// <summary><c>getattr(obj, name)</c>.</summary>
    /// <exception cref="Errors.PythonErrorException">The attribute does not exist (<c>AttributeError</c>).</exception>
    public abstract PythonRef GetAttr(string name);

    /// <summary>The attribute <c>obj.name</c> as a value (<c>model.training</c> as a bool, a weight as a tensor, ...).</summary>
    /// <exception cref="Errors.PythonErrorException">The attribute does not exist (<c>AttributeError</c>).</exception>
    public PythonValue GetAttrValue(string name, CallOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ThrowIfDisposed();
        return Session.Helper("get_attr").Call([this, name], options);
    }

    /// <summary><c>obj.name = value</c>; <paramref name="value"/> is converted like a call argument.</summary>
    /// <exception cref="Errors.PythonErrorException">Python refused the assignment.</exception>
    /// <exception cref="Errors.UnsupportedArgumentException">The value's type cannot be passed.</exception>
    public void SetAttr(string name, object? value, CallOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ThrowIfDisposed();
        Session.Helper("set_attr").Call([this, name, value], options).Dispose();
    }

    /// <summary>Calls the object with positional arguments and default options: <c>obj(*args)</c>.</summary>
    /// <exception cref="Errors.UnsupportedArgumentException">An argument's type cannot be passed.</exception>
    /// <exception cref="Errors.PythonErrorException">The call raised; carries the Python traceback.</exception>
    /// <exception cref="Errors.TensorExportException">A tensor result was refused by the export policy.</exception>
    public PythonValue Call(params object?[] args) => Call(args, null);

    /// <summary>
    /// Calls the object: <c>obj(*args, **options.KeywordArguments)</c> in <see cref="CallOptions.GradMode"/>, converting
    /// the result to a <see cref="PythonValue"/> (tensors through the export policy with <see cref="CallOptions.Export"/>).
    /// </summary>
    /// <remarks>
    /// Arguments: null, bool, integers, float/double, string, .NET arrays of the dtype table's element types (any rank:
    /// a tensor of that shape), <see cref="System.Numerics.Tensors.Tensor{T}"/>, <see cref="TensorArgument"/>, lists,
    /// <c>object?[]</c> and other enumerables (Python lists), tuples (<see cref="System.Runtime.CompilerServices.ITuple"/>),
    /// dictionaries with string keys, <see cref="PythonRef"/> of the same session, within <see cref="ConversionLimits"/>
    /// (the same in every kind of session: no cycles, nesting, rank, valid UTF-16 text). Array data is <b>copied</b> into a new
    /// tensor, so the callee can neither change nor keep the caller's memory (the same in every kind of session).
    /// </remarks>
    /// <exception cref="Errors.UnsupportedArgumentException">An argument's type cannot be passed.</exception>
    /// <exception cref="Errors.PythonErrorException">The call raised; carries the Python traceback.</exception>
    /// <exception cref="Errors.TensorExportException">A tensor result was refused by the export policy.</exception>
#pragma warning disable CA1716 // Call is the natural name (VB's reserved word does not matter here)
    public abstract PythonValue Call(IReadOnlyList<object?> args, CallOptions? options);
#pragma warning restore CA1716

    /// <summary>
    /// <see cref="Call(IReadOnlyList{object?}, CallOptions?)"/> without blocking the caller, on the thread pool. Both session
    /// kinds override it so that cancellation and <see cref="CallOptions.Timeout"/> stop the Python code (isolated: the worker
    /// is stopped; in-process: the code is interrupted at its next bytecode boundary) and throw
    /// <see cref="OperationCanceledException"/> / <see cref="Errors.WorkerTimeoutException"/>. This default (for other
    /// implementations) only stops the wait; a result that arrives later is disposed.
    /// </summary>
    public virtual async Task<PythonValue> CallAsync(IReadOnlyList<object?> args, CallOptions? options, CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        var call = Task.Run(() => Call(args, options), CancellationToken.None);
        var wait = options?.Timeout is { } timeout ? call.WaitAsync(timeout, ct) : call.WaitAsync(ct);
        try
        {
            return await wait.ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
            _ = call.ContinueWith(t => { if (t.IsCompletedSuccessfully) t.Result.Dispose(); }, TaskScheduler.Default);
            throw;
        }
    }

    /// <summary>Drops the reference. Harmless when called again.</summary>
    public void Dispose()
    {
        if (IsDisposed)
            return;
        IsDisposed = true;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the reference; <paramref name="disposing"/> is false from a finalizer.</summary>
    protected virtual void Dispose(bool disposing) { }

    /// <summary>Throws <see cref="ObjectDisposedException"/> after <see cref="Dispose()"/> or after the session was disposed.</summary>
    protected void ThrowIfDisposed()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ObjectDisposedException.ThrowIf(Session.IsDisposed, Session);
    }
}
