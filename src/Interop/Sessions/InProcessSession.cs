namespace Interop.Sessions;

/// <summary>The session in this process's embedded interpreter.</summary>
internal sealed class InProcessSession : PythonSession
{
    public override string Description => "in-process";

    public override PythonRef Import(string moduleName) => throw new NotImplementedException();

    public override PythonRef LoadFile(string path) => throw new NotImplementedException();
}
